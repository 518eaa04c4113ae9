import { latestFull, restorableChain } from './chain.js';
import type { SnapshotRef } from './names.js';

export type GcPolicy = 'exponential' | 'limit';

export interface RetentionPolicy {
  policy: GcPolicy;
  /** `limit`: how many full snapshots to keep (at least 1). */
  maxBackups: number;
}

export interface RetentionPlan {
  keep: SnapshotRef[];
  delete: SnapshotRef[];
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

/** Full snapshots, newest first. */
function fullsNewestFirst(snapshots: readonly SnapshotRef[]): SnapshotRef[] {
  return snapshots.filter((s) => s.kind === 'full').sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.lastRevision - a.lastRevision);
}

/**
 * Exponential thinning: every full snapshot of the last hour, then the newest of each hour for a
 * day, of each day for a week, of each week for four weeks; nothing older.
 */
function exponentialKeep(fulls: SnapshotRef[], now: Date): Set<SnapshotRef> {
  const keep = new Set<SnapshotRef>();
  const seenBuckets = new Set<string>();
  for (const s of fulls) {
    const age = now.getTime() - s.createdAt.getTime();
    const t = s.createdAt.getTime();
    let bucket: string;
    if (age < HOUR) bucket = `all:${s.name}`;
    else if (age < DAY) bucket = `h:${Math.floor(t / HOUR)}`;
    else if (age < 7 * DAY) bucket = `d:${Math.floor(t / DAY)}`;
    else if (age < 4 * WEEK) bucket = `w:${Math.floor(t / WEEK)}`;
    else continue;
    if (seenBuckets.has(bucket)) continue;
    seenBuckets.add(bucket);
    keep.add(s);
  }
  return keep;
}

/** The revision of the full snapshot a delta follows: the highest below the delta's last revision. */
export function ownerRevisionOf(delta: SnapshotRef, fullRevisions: readonly number[]): number | undefined {
  let owner: number | undefined;
  for (const r of fullRevisions) if (r < delta.lastRevision && (owner === undefined || r > owner)) owner = r;
  return owner;
}

/**
 * Which snapshots retention deletes. Whatever the policy, the latest full snapshot and every delta
 * of the restorable chain after it are kept. A delta belongs to the newest full snapshot below its
 * last revision and lives exactly as long as that full snapshot, so every kept full snapshot stays
 * restorable to any revision up to the next one. Deltas older than every full snapshot go; nothing
 * is deleted from a store without a full snapshot (there is nothing to judge by).
 */
export function planRetention(snapshots: readonly SnapshotRef[], policy: RetentionPolicy, now: Date): RetentionPlan {
  const latest = latestFull(snapshots);
  if (!latest) return { keep: [...snapshots], delete: [] };
  const fulls = fullsNewestFirst(snapshots);
  const keptFulls = policy.policy === 'limit' ? new Set(fulls.slice(0, Math.max(1, policy.maxBackups))) : exponentialKeep(fulls, now);
  keptFulls.add(latest);
  const protectedDeltas = new Set(restorableChain(snapshots, latest).links.map((l) => l.delta));

  // Two full snapshots may hold the same revision; a delta follows whichever of them is kept.
  const fullRevisions = fulls.map((f) => f.lastRevision);
  const keptRevisions = new Set([...keptFulls].map((f) => f.lastRevision));
  const ownerRevision = (d: SnapshotRef): number | undefined => ownerRevisionOf(d, fullRevisions);

  const keep: SnapshotRef[] = [];
  const del: SnapshotRef[] = [];
  for (const s of snapshots) {
    let kept: boolean;
    if (s.kind === 'full') kept = keptFulls.has(s);
    else {
      const owner = ownerRevision(s);
      kept = protectedDeltas.has(s) || s.lastRevision > latest.lastRevision || (owner !== undefined && keptRevisions.has(owner));
    }
    (kept ? keep : del).push(s);
  }
  return { keep, delete: del };
}
