/**
 * Sends guarded replay transactions (replay-guards.ts) with up to `window` of them in flight, so the
 * replay runs at etcd's pipelined rate instead of one round trip per revision.
 *
 * Order. etcd applies transactions in the order their handlers propose them, and runs one handler
 * (a goroutine) per request: of requests read together, Go's scheduler runs the last one first
 * (its "runnext" slot) and, with one thread (the temporary etcd runs with GOMAXPROCS=1), the others
 * in order. So the transactions gathered in one turn of the event loop go out together, in
 * revision order, followed by a serializable read of an absent key that takes that slot and costs
 * etcd no raft entry. Measured on 2 cores, etcd 3.4: the second of two transactions sent together
 * overtook the first 94% of the time, 8% with the read behind them; with GOMAXPROCS=1 and 4 or 16
 * in flight, 21% and 6% of the transactions were refused without the read, none with it.
 * Correctness never rests on this: it only makes refusals rare.
 *
 * Refusals. A transaction etcd reached before its predecessor was refused by its guard and wrote
 * nothing. It is sent again as soon as its predecessor is applied or in flight on a send that is
 * not known to be doomed; never while an earlier send of it is unanswered (the guards cannot tell
 * every later state from the predecessor's, so two copies in flight could both apply). A refusal
 * dooms every send in flight behind it; new transactions wait behind the refused one's new send
 * instead of following the doomed ones into refusal.
 */
import type { TxnCompare, TxnOp } from '../etcd/temporary.js';
import { RestoreError } from './plan.js';
import type { GuardedTxn } from './replay-guards.js';

/** The temporary etcd as the window sees it (TemporaryEtcd; tests put a delay in front of it). */
export interface GuardedTxnTarget {
  guardedTxn(compare: TxnCompare[], ops: TxnOp[]): Promise<{ succeeded: boolean; revision: number }>;
  /** A read that costs etcd no raft entry, sent behind each burst (see Order above). */
  tailRead?(): Promise<void>;
}

export const DEFAULT_REPLAY_WINDOW = 64;

interface Sent {
  txn: GuardedTxn;
  /** Where the revision comes from, for errors ("delta Incr-…"). */
  source: string;
  /** Its latest send went out with its predecessor applied. */
  predecessorApplied?: boolean;
}

export class ReplayWindow {
  private applied: number;
  /** Revisions answered as applied while an earlier one is not confirmed yet. */
  private readonly ahead = new Set<number>();
  /** Sent and not answered yet; `sound` until a refusal before it dooms it. */
  private readonly inFlight = new Map<number, { sound: boolean }>();
  /** Refused because they came before their predecessor: sent again behind it. */
  private readonly refused = new Map<number, Sent>();
  /** Sends gathered in this turn of the event loop, flushed together. */
  private outbox: Sent[] = [];
  private failure: RestoreError | undefined;
  private wake: (() => void) | undefined;
  private lastSent: number;
  /** Transactions sent, and of them sent again after a refusal. */
  readonly counts = { sent: 0, resent: 0 };

  constructor(
    private readonly target: GuardedTxnTarget,
    private readonly window: number,
    startRevision: number,
  ) {
    if (!Number.isSafeInteger(window) || window < 1) throw new RangeError(`replay window ${window} is not a positive integer`);
    this.applied = startRevision;
    this.lastSent = startRevision;
  }

  /** Every revision up to this one is applied. */
  get confirmed(): number {
    return this.applied;
  }

  /** Sends `txn` once the window has room, its `sendAfter` is applied and its predecessor is sent; throws the first failure. */
  async send(txn: GuardedTxn, source: string): Promise<void> {
    if (txn.revision !== this.lastSent + 1) throw new RangeError(`revision ${txn.revision} sent after ${this.lastSent}`);
    await this.until(() => txn.revision - this.applied <= this.window && this.applied >= txn.sendAfter && this.behindPredecessor(txn.revision));
    this.lastSent = txn.revision;
    this.transmit({ txn, source });
  }

  /** Waits until every transaction sent is applied; resolves with the revision reached. */
  async drain(): Promise<number> {
    await this.until(() => this.applied === this.lastSent);
    return this.applied;
  }

  /** Waits for the answers of everything in flight, whatever they are (before stopping the etcd). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await new Promise<void>((r) => (this.wake = r));
  }

  /** Sending revision r now puts it behind its predecessor's latest send, which may still apply, or after it applied. */
  private behindPredecessor(r: number): boolean {
    return r - 1 <= this.applied || this.ahead.has(r - 1) || this.inFlight.get(r - 1)?.sound === true;
  }

  private async until(ready: () => boolean): Promise<void> {
    for (;;) {
      if (this.failure) {
        await this.settle();
        throw this.failure;
      }
      if (ready()) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Counts as in flight at once (so the next one can follow it); goes out with the rest of this turn's. */
  private transmit(sent: Sent): void {
    this.inFlight.set(sent.txn.revision, { sound: true });
    this.counts.sent++;
    // Sent with its predecessor applied: a refusal can no longer mean "too early".
    sent.predecessorApplied = this.applied >= sent.txn.revision - 1;
    if (this.outbox.push(sent) === 1) setImmediate(() => this.flush());
  }

  private flush(): void {
    const burst = this.outbox;
    this.outbox = [];
    for (const sent of burst) this.request(sent);
    if (burst.length > 1) this.target.tailRead?.().catch(() => {});
  }

  private request(sent: Sent): void {
    const r = sent.txn.revision;
    this.target
      .guardedTxn(sent.txn.compare, sent.txn.success)
      .then(
        (res) => {
          this.inFlight.delete(r);
          this.answered(sent, res);
        },
        (err: unknown) => {
          this.inFlight.delete(r);
          this.fail(new RestoreError('etcd_failed', `replaying revision ${r} of ${sent.source} (${sent.txn.success.length} events): ${(err as Error).message}`, { cause: err }));
        },
      )
      .finally(() => {
        const w = this.wake;
        this.wake = undefined;
        w?.();
      });
  }

  private answered(sent: Sent, res: { succeeded: boolean; revision: number }): void {
    const r = sent.txn.revision;
    if (res.succeeded) {
      if (res.revision !== r) {
        this.fail(new RestoreError('revision_mismatch', `replaying ${sent.source}: revision ${r} became revision ${res.revision} in the temporary etcd`));
        return;
      }
      this.ahead.add(r);
      while (this.ahead.delete(this.applied + 1)) this.applied++;
    } else if (sent.predecessorApplied || res.revision >= r) {
      this.fail(
        new RestoreError(
          'revision_mismatch',
          `replaying ${sent.source}: revision ${r} does not apply to the temporary etcd at revision ${res.revision}: a key it deletes is missing or one it writes is newer; the replay no longer follows the source`,
        ),
      );
    } else {
      this.refused.set(r, sent);
      // Everything in flight behind it was sent behind this send, which wrote nothing.
      for (const [q, f] of this.inFlight) if (q > r) f.sound = false;
    }
    this.resendRefused();
  }

  /** In revision order, so each one sent again can take the next one behind it. */
  private resendRefused(): void {
    if (this.failure || this.refused.size === 0) return;
    for (const r of [...this.refused.keys()].sort((a, b) => a - b)) {
      if (!this.behindPredecessor(r)) continue;
      const sent = this.refused.get(r) as Sent;
      this.refused.delete(r);
      this.counts.resent++;
      this.transmit(sent);
    }
  }

  private fail(err: RestoreError): void {
    this.failure ??= err;
  }
}
