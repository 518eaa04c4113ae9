/**
 * The compares that let a restore send the transaction of revision r before etcd has applied r-1,
 * and the proof that they keep the replay exact. Pure: batches in, etcd transaction parts out.
 *
 * Setting. The temporary etcd starts from the full snapshot at revision F, the state of the source
 * cluster at F; write Src(k) for the source's keyspace at revision k. T_r is the transaction of
 * original revision r (every event of r, one op each). Nothing but T_r writes to the temporary etcd
 * (leases are kept alive, so its lessor deletes nothing; lease grants write no key and move no
 * revision). etcd applies transactions one at a time in raft order and evaluates a transaction's
 * compares against the state it is applied to; a transaction whose compares fail writes nothing,
 * and etcd then does not move the revision. T_r is sent again only after its previous send was
 * answered, with a failure, so it is applied at most once; a send whose answer is lost (a timeout)
 * stops the restore.
 *
 * Claim: the temporary etcd only ever holds Src(k) at revision k, for some k, so T_r applies to
 * Src(r-1) and yields Src(r) at revision r, which the sender checks in the response.
 *
 * Induction on applied transactions. Let the temporary etcd hold Src(k) and T_r be applied next.
 * T_r has not been applied before (at most once, above), and by induction every applied T_q came in
 * order, so r > k. The sender sends T_r only once every revision up to `sendAfter(r)` is confirmed
 * applied, so k >= sendAfter(r). The predecessor compare P_r holds on Src(r-1) and fails on Src(k)
 * for every k in [sendAfter(r), r-2]; so T_r's compares hold only if k = r-1, as claimed. Choosing
 * P_r:
 *   - r-1 put some key p: P_r is `mod_revision(p) == r-1`. Before r-1 the key's mod_revision is
 *     below r-1, or 0 when absent (etcd compares a missing key as all zeros). sendAfter = F.
 *   - r-1 only deleted keys: P_r is `version(p) == 0` (p absent) for one deleted p. A delete event
 *     exists only for a key that existed at r-2, put last at some q <= r-2 and present in every
 *     Src(k), k in [q, r-2]: so P_r fails there, and sendAfter = q. When none of the `horizon`
 *     batches kept before r-1 wrote p, q is before them: sendAfter = r-2-horizon (a window of
 *     horizon+2 or less has that confirmed already, so it costs no wait). p is the deleted key
 *     with the smallest such bound.
 *   - r = F+1: the predecessor is the full snapshot, which is there before anything is sent.
 * Why sendAfter at all: Src(k) and Src(j) can hold the same keys (a key created at k+1 and deleted
 * at k+2 leaves Src(k+2) as Src(k) was), and compares see keys only, not etcd's revision; so no
 * compare tells the state after a delete-only revision from the state before the put it undid.
 * That is also why "applied at most once" rests on the sender and not on the compares.
 *
 * The compares on r's own keys (`mod_revision < r` for a put, `version > 0` for a delete) hold on
 * Src(r-1) whenever the chain is a faithful history (a delete event is only written for a key that
 * existed). When T_r fails with its predecessor confirmed applied, one of them failed: the
 * temporary etcd does not hold the state the chain expects, and the restore stops, where one
 * transaction per revision without compares would have deleted nothing and gone on.
 */
import type { TxnCompare, TxnOp } from '../etcd/temporary.js';
import type { RevisionBatch } from './plan.js';

export interface GuardedTxn {
  revision: number;
  /** Holds on the state of revision-1 and on none of the states from sendAfter to revision-2. */
  compare: TxnCompare[];
  /** One op per event of the revision. */
  success: TxnOp[];
  /** This revision and every one before it must be applied before the transaction is sent. */
  sendAfter: number;
  /** Lease IDs the puts attach: granted before the transaction is sent. */
  leases: string[];
}

function ops(batch: RevisionBatch): TxnOp[] {
  return batch.events.map((ev) =>
    ev.type === 'delete'
      ? { request_delete_range: { key: ev.kv.key } }
      : { request_put: ev.kv.lease !== '0' ? { key: ev.kv.key, value: ev.kv.value, lease: ev.kv.lease } : { key: ev.kv.key, value: ev.kv.value } },
  );
}

/** Compares that fail once the batch is applied (put: mod_revision moves to r; delete: the key goes). */
function notApplied(batch: RevisionBatch): TxnCompare[] {
  return batch.events.map((ev) =>
    ev.type === 'delete' ? { key: ev.kv.key, target: 'Version', result: 'Greater', version: 0 } : { key: ev.kv.key, target: 'Mod', result: 'Less', mod_revision: batch.revision },
  );
}

/** Map keys for Buffers: latin1 maps each byte to one char, so distinct keys stay distinct. */
const id = (key: Buffer): string => key.toString('latin1');

/**
 * Guards for consecutive batches. Keeps the last `horizon` batches and, per key, the latest of them
 * that wrote it, to know when a key a delete-only revision deletes was last put.
 */
export class ReplayGuards {
  private readonly recent: RevisionBatch[] = [];
  private readonly lastWrite = new Map<string, number>();
  private revision: number;
  /** The predecessor compare of the next batch, worked out from the last one. */
  private pred: { compare: TxnCompare[]; sendAfter: number };

  /** `startRevision`: the revision the temporary etcd holds before the first batch (the full snapshot's). */
  constructor(
    private readonly startRevision: number,
    private readonly horizon: number,
  ) {
    if (!Number.isSafeInteger(horizon) || horizon < 1) throw new RangeError(`horizon ${horizon} is not a positive integer`);
    this.revision = startRevision;
    this.pred = { compare: [], sendAfter: startRevision };
  }

  /** The transaction of `batch`, which must follow the previous one (or the start) by one revision. */
  next(batch: RevisionBatch): GuardedTxn {
    if (batch.revision !== this.revision + 1) throw new RangeError(`batch of revision ${batch.revision} given after revision ${this.revision}`);
    const leases = [...new Set(batch.events.filter((ev) => ev.type === 'put' && ev.kv.lease !== '0').map((ev) => ev.kv.lease))];
    const txn: GuardedTxn = { revision: batch.revision, compare: [...this.pred.compare, ...notApplied(batch)], success: ops(batch), sendAfter: this.pred.sendAfter, leases };
    this.pred = this.successorGuard(batch);
    this.remember(batch);
    this.revision = batch.revision;
    return txn;
  }

  /** P_{r+1} for batch r; `lastWrite` still holds only revisions before r. */
  private successorGuard(batch: RevisionBatch): { compare: TxnCompare[]; sendAfter: number } {
    const put = batch.events.find((ev) => ev.type === 'put');
    if (put) return { compare: [{ key: put.kv.key, target: 'Mod', result: 'Equal', mod_revision: batch.revision }], sendAfter: this.startRevision };
    // Delete-only: the deleted key put longest ago gives the earliest state the compare tells apart.
    // A key no kept batch wrote was put before the oldest kept one (or before the start).
    const oldest = this.recent[0];
    const unknown = oldest && this.recent.length >= this.horizon ? Math.max(this.startRevision, oldest.revision - 1) : this.startRevision;
    let best: { key: Buffer; q: number } | undefined;
    for (const ev of batch.events) {
      const q = this.lastWrite.get(id(ev.kv.key)) ?? unknown;
      if (!best || q < best.q) best = { key: ev.kv.key, q };
      if (q === unknown) break;
    }
    // A revision without events cannot be in a chain (revisionBatches makes none): wait for it.
    if (!best) return { compare: [], sendAfter: batch.revision };
    return { compare: [{ key: best.key, target: 'Version', result: 'Equal', version: 0 }], sendAfter: best.q };
  }

  private remember(batch: RevisionBatch): void {
    this.recent.push(batch);
    for (const ev of batch.events) this.lastWrite.set(id(ev.kv.key), batch.revision);
    while (this.recent.length > this.horizon) {
      const old = this.recent.shift() as RevisionBatch;
      for (const ev of old.events) if (this.lastWrite.get(id(ev.kv.key)) === old.revision) this.lastWrite.delete(id(ev.kv.key));
    }
  }
}
