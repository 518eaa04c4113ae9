/**
 * The deltas of a plan replayed into the temporary etcd: one transaction per original revision, so
 * revisions stay aligned with the source, sent through a window of guarded transactions
 * (replay-guards.ts, replay-window.ts) while the next deltas are fetched.
 */
import { DEFAULT_REPLAY_LEASE_TTL_S, type LeaseKeeper } from '../etcd/temporary.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { DeltaPrefetcher } from './fetch.js';
import { liveKeyChange, RestoreError, RevisionCutter, type RestorePlan, type RevisionBatch } from './plan.js';
import { ReplayGuards } from './replay-guards.js';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow, type GuardedTxnTarget } from './replay-window.js';

export interface ReplayOptions {
  store: SnapStore;
  log: Logger;
  signal?: AbortSignal;
  /** Deltas read ahead of the one replayed (default 4). */
  prefetch?: number;
  /** Stored bytes the deltas read ahead may hold, the one replayed included (default 32 MiB). */
  prefetchBytes?: number;
  /** Stored size of each delta, by name (from the HEADs the restore makes anyway). */
  sizes?: ReadonlyMap<string, number>;
  replayLeaseTtlSeconds?: number;
  replayWindow?: number;
}

export interface ReplayProgress {
  /** Revision applied so far. */
  revision: number;
  deltasApplied: number;
  eventsApplied: number;
}

export interface Replayed {
  revision: number;
  events: number;
  deltas: number;
  keyChange: number;
  /** Transactions sent again after arriving before their predecessor. */
  resent: number;
}

export function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new RestoreError('aborted', 'restore aborted');
}

/** Progress is logged at most this often; the callback gets every delta. */
const LOG_EVERY_MS = 5_000;

/** A delta whose transactions are all sent, counted as applied once its last revision is. */
interface Queued {
  lastRevision: number;
  events: number;
  keyChange: number;
}

/**
 * Revision batches into the temporary etcd: guarded, with the leases their puts attach granted
 * first, through the window. Batches are given in revision order from `startRevision` + 1.
 */
export class BatchReplayer {
  private readonly guards: ReplayGuards;
  private readonly sender: ReplayWindow;
  private readonly leaseTtl: number;

  constructor(
    temp: GuardedTxnTarget,
    private readonly keeper: Pick<LeaseKeeper, 'has' | 'grant' | 'check'>,
    startRevision: number,
    opts: { window?: number; leaseTtlSeconds?: number } = {},
    private readonly signal?: AbortSignal,
  ) {
    const window = opts.window ?? DEFAULT_REPLAY_WINDOW;
    this.sender = new ReplayWindow(temp, window, startRevision);
    // Horizon = window: a delete-only revision then never holds its successor back beyond the window.
    this.guards = new ReplayGuards(startRevision, window);
    this.leaseTtl = opts.leaseTtlSeconds ?? DEFAULT_REPLAY_LEASE_TTL_S;
  }

  /** Every revision up to this one is applied. */
  get confirmed(): number {
    return this.sender.confirmed;
  }

  get counts(): { sent: number; resent: number } {
    return this.sender.counts;
  }

  /** Resolves once the batch's transaction is sent (not applied); `source` names it in errors. */
  async send(batch: RevisionBatch, source: string): Promise<void> {
    const txn = this.guards.next(batch);
    // Granted before the transaction that attaches them is sent; a grant moves no revision.
    for (const lease of txn.leases) if (!this.keeper.has(lease)) await this.keeper.grant(lease, this.leaseTtl);
    this.leasesHeld(`before revision ${batch.revision} of ${source}`);
    checkAborted(this.signal);
    await this.sender.send(txn, source);
  }

  /** Waits until every batch sent is applied; resolves with the revision reached. */
  async drain(): Promise<number> {
    const revision = await this.sender.drain();
    this.leasesHeld(`at revision ${revision}`);
    return revision;
  }

  /** Waits for every answer in flight, whatever it is; call before stopping the etcd. */
  settle(): Promise<void> {
    return this.sender.settle();
  }

  private leasesHeld(where: string): void {
    try {
      this.keeper.check();
    } catch (err) {
      throw new RestoreError('etcd_failed', `${where}: ${(err as Error).message}; a lease could expire and delete keys behind the replay`, { cause: err });
    }
  }
}

export async function replay(
  temp: GuardedTxnTarget,
  keeper: Pick<LeaseKeeper, 'has' | 'grant' | 'check'>,
  plan: RestorePlan,
  fullRevision: number,
  opts: ReplayOptions,
  onDelta: (p: ReplayProgress) => void,
): Promise<Replayed> {
  const refs = plan.links.map((l) => l.delta);
  const limits = { ...(opts.prefetch !== undefined ? { deltas: opts.prefetch } : {}), ...(opts.prefetchBytes !== undefined ? { bytes: opts.prefetchBytes } : {}) };
  const prefetch = new DeltaPrefetcher(opts.store, refs, limits, opts.signal, opts.sizes);
  const replayer = new BatchReplayer(
    temp,
    keeper,
    fullRevision,
    { ...(opts.replayWindow ? { window: opts.replayWindow } : {}), ...(opts.replayLeaseTtlSeconds ? { leaseTtlSeconds: opts.replayLeaseTtlSeconds } : {}) },
    opts.signal,
  );
  const done: ReplayProgress = { revision: fullRevision, deltasApplied: 0, eventsApplied: 0 };
  let keyChange = 0;
  const queued: Queued[] = [];
  let revision = fullRevision;
  let lastLog = performance.now();
  const progress = (): void => {
    while (queued.length > 0 && (queued[0] as Queued).lastRevision <= replayer.confirmed) {
      const q = queued.shift() as Queued;
      done.revision = q.lastRevision;
      done.deltasApplied++;
      done.eventsApplied += q.events;
      keyChange += q.keyChange;
      onDelta({ ...done });
      if (performance.now() - lastLog >= LOG_EVERY_MS) {
        lastLog = performance.now();
        opts.log.info(
          {
            revision: done.revision,
            targetRevision: plan.targetRevision,
            deltasApplied: done.deltasApplied,
            deltasTotal: refs.length,
            eventsApplied: done.eventsApplied,
            resent: replayer.counts.resent,
          },
          'restore progress',
        );
      }
    }
  };
  try {
    for (let i = 0; i < plan.links.length; i++) {
      const link = plan.links[i] as (typeof plan.links)[number];
      const delta = prefetch.open(i);
      const q: Queued = { lastRevision: revision, events: 0, keyChange: 0 };
      const send = async (batch: RevisionBatch): Promise<void> => {
        await replayer.send(batch, link.delta.name);
        revision = batch.revision;
        q.lastRevision = revision;
        q.events += batch.events.length;
        q.keyChange += liveKeyChange(batch);
        progress();
      };
      // The full snapshot may hold more than its name says (anchor bug #1044): skip what it has.
      const cut = new RevisionCutter(link.delta.name, Math.max(link.skipThrough, fullRevision), revision, plan.targetRevision, plan.toTime);
      try {
        checkAborted(opts.signal);
        // Events one by one: a delta is never decoded whole, whatever its size.
        for await (const ev of delta.events()) {
          const batch = cut.push(ev);
          if (batch) await send(batch);
          if (cut.reachedTarget) break;
        }
        const lastBatch = cut.end();
        if (lastBatch) await send(lastBatch);
        // Stopped at the target or not, the events applied must be the delta's as written.
        await delta.finish();
        if (!cut.reachedTarget && revision !== link.delta.lastRevision) {
          throw new RestoreError(revision < link.delta.lastRevision ? 'gap' : 'corrupt', `${link.delta.name} is named to end at revision ${link.delta.lastRevision} but its events end at ${revision}`);
        }
      } catch (err) {
        throw await delta.explain(err);
      } finally {
        delta.close();
      }
      queued.push(q);
      progress();
      if (cut.reachedTarget) break;
    }
    revision = await replayer.drain();
    progress();
  } finally {
    prefetch.close();
    await replayer.settle();
  }
  if (plan.toTime === undefined && revision !== plan.targetRevision) {
    throw new RestoreError('gap', `the replay ended at revision ${revision}, short of the target ${plan.targetRevision}`);
  }
  if (replayer.counts.resent > 0) opts.log.info({ ...replayer.counts }, 'replay transactions that reached etcd before their predecessor were sent again');
  return { revision, events: done.eventsApplied, deltas: done.deltasApplied, keyChange, resent: replayer.counts.resent };
}
