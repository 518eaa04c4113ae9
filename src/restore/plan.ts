/**
 * The pure part of a restore: which objects to read, up to where, and what a replayed revision must
 * look like. No I/O here, so every refusal is decided (and tested) on plain data.
 */
import { latestFull, restorableChain, type Chain, type ChainLink } from '../snapshot/chain.js';
import type { DeltaEvent } from '../snapshot/delta-format.js';
import type { SnapshotRef } from '../snapshot/names.js';

export type RestoreErrorCode =
  | 'corrupt'
  | 'gap'
  | 'foreign_cluster'
  | 'data_dir_not_empty'
  | 'no_backup'
  | 'revision_mismatch'
  /** --to-revision / --to-time asks for a point the backups do not reach. */
  | 'target_not_covered'
  | 'bad_request'
  /** The backups need an etcd release --etcd-bin-dir does not hold (a 3.6 chain and only 3.5 tools). */
  | 'etcd_version'
  /** The temporary etcd or etcdctl failed. */
  | 'etcd_failed'
  /** The store could not be read (unreachable, denied, timed out): nothing wrong with the backups themselves. */
  | 'store_failed'
  | 'aborted'
  /** Anything else (disk full, permissions on the data dir's parent). */
  | 'failed';

export class RestoreError extends Error {
  override name = 'RestoreError';
  constructor(
    readonly code: RestoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface RestoreTarget {
  toRevision?: number;
  toTime?: Date;
}

export interface RestorePlan {
  full: SnapshotRef;
  /** Deltas to read, in order; the last one may be cut short by the target. */
  links: ChainLink[];
  /** The revision the restored data dir will hold. */
  targetRevision: number;
  /** Events after this time are not applied (point-in-time restore by time). */
  toTime?: Date;
  chain: Chain;
}

function fmtGaps(chain: Chain): string {
  return chain.gaps.map((g) => (g.from === g.to ? `${g.from}` : `${g.from}-${g.to}`)).join(', ');
}

/**
 * Picks the full snapshot and deltas that reach the target. Without a target, the whole latest
 * chain: a chain with a gap is refused (restoring its first part would silently drop every revision
 * stored after the gap; the operator must choose, with --to-revision, to stop before it).
 */
export function planRestore(listing: readonly SnapshotRef[], target: RestoreTarget = {}): RestorePlan {
  const { toRevision, toTime } = target;
  if (toRevision !== undefined && toTime !== undefined) throw new RestoreError('bad_request', 'give --to-revision or --to-time, not both');
  if (toRevision !== undefined && (!Number.isSafeInteger(toRevision) || toRevision < 1)) throw new RestoreError('bad_request', `--to-revision ${toRevision} is not a revision (a positive integer)`);
  if (toTime !== undefined && Number.isNaN(toTime.getTime())) throw new RestoreError('bad_request', '--to-time is not a valid time');
  const fulls = listing.filter((s) => s.kind === 'full');
  if (fulls.length === 0) throw new RestoreError('no_backup', listing.length === 0 ? 'the store holds no snapshot' : 'the store holds deltas but no full snapshot to start from');

  // The newest full snapshot at or before the target: a later one holds revisions past it.
  const eligible = fulls.filter((f) => (toRevision === undefined || f.lastRevision <= toRevision) && (toTime === undefined || f.createdAt.getTime() <= toTime.getTime()));
  if (eligible.length === 0) {
    const oldest = fulls.reduce((a, b) => (a.lastRevision <= b.lastRevision ? a : b));
    const what = toRevision !== undefined ? `revision ${toRevision}` : `time ${toTime?.toISOString()}`;
    throw new RestoreError('target_not_covered', `no full snapshot at or before ${what}; the oldest is ${oldest.name} (revision ${oldest.lastRevision})`);
  }
  return planFrom(listing, latestFull(eligible) as SnapshotRef, target);
}

/**
 * The plan again once the full snapshot's db has been read, from the revision inside it. gardener
 * names a full snapshot after a revision it reads before asking etcd for the snapshot (its bug
 * #1044), so the db can hold later revisions than the name says: the chain then starts at the db's
 * revision, deltas the db already holds drop out, and the delta that overlaps it applies only its
 * later revisions. Without this, a chain of such a full snapshot alone restored short of the db
 * (`target_not_covered`), and one with a delta inside the db's revisions looked `corrupt`.
 */
export function planFromFullDb(listing: readonly SnapshotRef[], full: SnapshotRef, dbRevision: number, target: RestoreTarget = {}): RestorePlan {
  if (dbRevision < full.lastRevision) throw new RestoreError('corrupt', `${full.name} is named for revision ${full.lastRevision} but the db inside holds revision ${dbRevision}`);
  const { toRevision } = target;
  if (toRevision !== undefined && dbRevision > toRevision) {
    throw new RestoreError('target_not_covered', `${full.name} is named for revision ${full.lastRevision} but holds revision ${dbRevision}, past the target ${toRevision}`);
  }
  return planFrom(listing, { ...full, lastRevision: dbRevision }, target);
}

/** The chain from one full snapshot, cut to the target. */
function planFrom(listing: readonly SnapshotRef[], full: SnapshotRef, target: RestoreTarget): RestorePlan {
  const { toRevision, toTime } = target;
  const chain = restorableChain(listing, full);

  if (toRevision !== undefined) {
    if (toRevision > chain.lastRevision) {
      const why = chain.contiguous ? `the backups end at revision ${chain.lastRevision}` : `revisions ${fmtGaps(chain)} are missing from the backups`;
      throw new RestoreError(chain.contiguous ? 'target_not_covered' : 'gap', `cannot restore to revision ${toRevision}: ${why}`);
    }
    const links: ChainLink[] = [];
    for (const l of chain.links) {
      if (l.skipThrough >= toRevision) break;
      links.push(l);
    }
    return { full, links, targetRevision: toRevision, chain };
  }
  if (toTime !== undefined) {
    // The exact revision is known only once the events' times are read; stored deltas that start
    // after the time cannot hold an earlier event (their objects are named when uploaded).
    if (!chain.contiguous) {
      const after = chain.stranded.some((s) => s.createdAt.getTime() <= toTime.getTime());
      if (after) throw new RestoreError('gap', `cannot restore to ${toTime.toISOString()}: revisions ${fmtGaps(chain)} are missing from the backups`);
    }
    return { full, links: chain.links, targetRevision: chain.lastRevision, toTime, chain };
  }
  if (!chain.contiguous) {
    throw new RestoreError(
      'gap',
      `revisions ${fmtGaps(chain)} are missing from the backups after ${full.name}; the chain restores only up to revision ${chain.lastRevision}: pass --to-revision ${chain.lastRevision} to accept that`,
    );
  }
  return { full, links: chain.links, targetRevision: chain.lastRevision, chain };
}

/**
 * The cluster a chain belongs to, from the `cluster-id` metadata of its objects (undefined when none
 * carries one, as with the anchor's objects). Objects that disagree, or a chain of another cluster
 * than the one expected, are refused.
 */
export function chainClusterId(objects: readonly { name: string; clusterId: string | undefined }[], expect?: string): string | undefined {
  let seen: { name: string; clusterId: string } | undefined;
  for (const o of objects) {
    if (o.clusterId === undefined || o.clusterId === '') continue;
    if (seen && normalizeId(seen.clusterId) !== normalizeId(o.clusterId)) {
      throw new RestoreError('foreign_cluster', `${o.name} belongs to cluster ${o.clusterId} but ${seen.name} to cluster ${seen.clusterId}: the chain mixes two clusters`);
    }
    seen ??= { name: o.name, clusterId: o.clusterId };
  }
  if (seen && expect !== undefined && normalizeId(seen.clusterId) !== normalizeId(expect)) {
    throw new RestoreError('foreign_cluster', `the backups belong to cluster ${seen.clusterId}, not to the expected cluster ${expect}`);
  }
  return seen?.clusterId;
}

function normalizeId(id: string): string {
  return id
    .toLowerCase()
    .replace(/^0x/, '')
    .replace(/^0+(?=.)/, '');
}

/** The events of one original revision: replayed as one transaction, so revisions stay aligned. */
export interface RevisionBatch {
  revision: number;
  events: DeltaEvent[];
}

export interface BatchCut {
  batches: RevisionBatch[];
  /** True when the target (revision or time) was reached inside this delta: nothing after it applies. */
  reachedTarget: boolean;
}

/**
 * Groups a delta's events by revision as they come, dropping those already applied (`skipThrough`)
 * and those past the target. Revisions must follow on from `after` with nothing missing: a hole is
 * a gap even when the object names say otherwise. Holds one revision's events at a time.
 */
export class RevisionCutter {
  private open: RevisionBatch | undefined;
  private last: number;
  private readonly limit: number | undefined;
  /** The target (revision or time) was reached: nothing more of this delta applies. */
  reachedTarget = false;

  constructor(
    private readonly deltaName: string,
    private readonly skipThrough: number,
    after: number,
    private readonly targetRevision: number,
    toTime?: Date,
  ) {
    this.last = after;
    this.limit = toTime?.getTime();
  }

  /** Takes the next event; returns the batch it completed, if any. Events after the target are ignored. */
  push(ev: DeltaEvent): RevisionBatch | undefined {
    if (this.reachedTarget) return undefined;
    const rev = ev.kv.modRevision;
    if (rev <= this.skipThrough) return undefined;
    if (rev > this.targetRevision) return this.stop();
    if (this.open && this.open.revision === rev) {
      this.open.events.push(ev);
      return undefined;
    }
    if (this.limit !== undefined && Date.parse(ev.time) > this.limit) return this.stop();
    if (rev < this.last + 1) throw new RestoreError('corrupt', `${this.deltaName}: event at revision ${rev} after revision ${this.last}: revisions go back`);
    if (rev > this.last + 1) throw new RestoreError('gap', `${this.deltaName}: revisions ${this.last + 1}-${rev - 1} are missing (the delta jumps from ${this.last} to ${rev})`);
    const done = this.open;
    this.open = { revision: rev, events: [ev] };
    this.last = rev;
    return done;
  }

  /** The last batch, once the delta's events are all pushed. */
  end(): RevisionBatch | undefined {
    if (this.last >= this.targetRevision) this.reachedTarget = true;
    const done = this.open;
    this.open = undefined;
    return done;
  }

  private stop(): RevisionBatch | undefined {
    this.reachedTarget = true;
    const done = this.open;
    this.open = undefined;
    return done;
  }
}

/** The whole-delta form of RevisionCutter. */
export function revisionBatches(deltaName: string, events: readonly DeltaEvent[], skipThrough: number, after: number, targetRevision: number, toTime?: Date): BatchCut {
  const cutter = new RevisionCutter(deltaName, skipThrough, after, targetRevision, toTime);
  const batches: RevisionBatch[] = [];
  for (const ev of events) {
    const b = cutter.push(ev);
    if (b) batches.push(b);
    if (cutter.reachedTarget) return { batches, reachedTarget: true };
  }
  const b = cutter.end();
  if (b) batches.push(b);
  return { batches, reachedTarget: cutter.reachedTarget };
}

/** How many live keys a batch adds (puts of new keys) minus those it removes. */
export function liveKeyChange(batch: RevisionBatch): number {
  let n = 0;
  for (const ev of batch.events) n += ev.type === 'delete' ? -1 : ev.kv.version === 1 ? 1 : 0;
  return n;
}
