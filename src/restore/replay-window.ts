/**
 * Sends guarded replay transactions (replay-guards.ts) with up to `window` of them in flight, so the
 * replay runs at etcd's pipelined rate instead of one round trip per revision. A transaction whose
 * guard failed reached etcd before its predecessor was applied: it wrote nothing, and is sent again
 * once the predecessor is confirmed, which happens at most once per transaction.
 */
import type { ICompare, IRequestOp } from 'etcd3';
import { RestoreError } from './plan.js';
import type { GuardedTxn } from './replay-guards.js';

/** The temporary etcd as the window sees it (TemporaryEtcd; tests put a delay in front of it). */
export interface GuardedTxnTarget {
  guardedTxn(compare: ICompare[], ops: IRequestOp[]): Promise<{ succeeded: boolean; revision: number }>;
}

export const DEFAULT_REPLAY_WINDOW = 16;

interface Sent {
  txn: GuardedTxn;
  /** Where the revision comes from, for errors ("delta Incr-…"). */
  source: string;
}

export class ReplayWindow {
  private applied: number;
  /** Revisions answered as applied while an earlier one is not confirmed yet. */
  private readonly ahead = new Set<number>();
  /** Refused because they came before their predecessor: sent again once it is confirmed. */
  private readonly refused = new Map<number, Sent>();
  private inFlight = 0;
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

  /** Sends `txn` once the window has room and its `sendAfter` is applied; throws the first failure. */
  async send(txn: GuardedTxn, source: string): Promise<void> {
    if (txn.revision !== this.lastSent + 1) throw new RangeError(`revision ${txn.revision} sent after ${this.lastSent}`);
    await this.until(() => txn.revision - this.applied <= this.window && this.applied >= txn.sendAfter);
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
    while (this.inFlight > 0) await new Promise<void>((r) => (this.wake = r));
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

  private transmit(sent: Sent): void {
    const { txn } = sent;
    // Sent with its predecessor confirmed: a refusal can no longer mean "too early".
    const predecessorApplied = this.applied >= txn.revision - 1;
    this.inFlight++;
    this.counts.sent++;
    this.target.guardedTxn(txn.compare, txn.success).then(
      (res) => this.answered(sent, predecessorApplied, res),
      (err: unknown) => this.fail(new RestoreError('etcd_failed', `replaying revision ${txn.revision} of ${sent.source} (${txn.success.length} events): ${(err as Error).message}`, { cause: err })),
    ).finally(() => {
      this.inFlight--;
      const w = this.wake;
      this.wake = undefined;
      w?.();
    });
  }

  private answered(sent: Sent, predecessorApplied: boolean, res: { succeeded: boolean; revision: number }): void {
    const r = sent.txn.revision;
    if (res.succeeded) {
      if (res.revision !== r) return this.fail(new RestoreError('revision_mismatch', `replaying ${sent.source}: revision ${r} became revision ${res.revision} in the temporary etcd`));
      this.ahead.add(r);
    } else if (predecessorApplied || res.revision >= r) {
      return this.fail(
        new RestoreError('revision_mismatch', `replaying ${sent.source}: revision ${r} does not apply to the temporary etcd at revision ${res.revision}: a key it deletes is missing or one it writes is newer; the replay no longer follows the source`),
      );
    } else {
      this.refused.set(r, sent);
    }
    while (this.ahead.delete(this.applied + 1)) this.applied++;
    const next = this.refused.get(this.applied + 1);
    if (next && !this.failure) {
      this.refused.delete(next.txn.revision);
      this.counts.resent++;
      this.transmit(next);
    }
  }

  private fail(err: RestoreError): void {
    this.failure ??= err;
  }
}
