/**
 * Retention in a bucket that locks its objects (S3 Object Lock, a local store's retention): which of
 * the snapshots the plan deletes may go now, which wait for their lock, and what `/status` says of
 * them. Pure: the dates come from the store's listing or from the upload time plus the lock length.
 */
import type { SnapshotRef } from './names.js';
import { ownerRevisionOf } from './retention.js';

export interface HeldSnapshot {
  name: string;
  /** When the lock ends; undefined when the store refused the delete without saying until when. */
  retainUntil?: Date;
  /** lock: the object itself is retained; chain: a full snapshot kept as long as deltas that follow it are. */
  reason: 'lock' | 'chain';
}

export interface LockedDeletes {
  /** Deletable now, deltas first: a full snapshot goes only once the deltas that follow it are gone. */
  deltas: SnapshotRef[];
  fulls: SnapshotRef[];
  held: HeldSnapshot[];
}

function later(a: Date | undefined, b: Date | undefined): Date | undefined {
  return a === undefined || b === undefined ? undefined : a > b ? a : b;
}

/**
 * Of `candidates`, those outside every group (a full snapshot and the deltas that follow it) that
 * has a held delta, and a `chain` hold for the others: the group stays whole, so restorable, until
 * its last held delta may go (undefined when one of them gave no date). A delta without its full
 * snapshot restores nothing.
 */
export function holdGroups(
  candidates: readonly SnapshotRef[],
  heldDeltas: readonly { ref: SnapshotRef; retainUntil?: Date | undefined }[],
  all: readonly SnapshotRef[],
): { free: SnapshotRef[]; held: HeldSnapshot[] } {
  const fullRevisions = all.filter((s) => s.kind === 'full').map((s) => s.lastRevision);
  const groupOf = (s: SnapshotRef): number | undefined => (s.kind === 'full' ? s.lastRevision : ownerRevisionOf(s, fullRevisions));
  const holds = new Map<number, { until: Date | undefined }>();
  for (const d of heldDeltas) {
    const group = groupOf(d.ref);
    if (group === undefined) continue;
    const prev = holds.get(group);
    holds.set(group, { until: prev ? later(prev.until, d.retainUntil) : d.retainUntil });
  }
  const free: SnapshotRef[] = [];
  const held: HeldSnapshot[] = [];
  for (const s of candidates) {
    const group = groupOf(s);
    const hold = group === undefined ? undefined : holds.get(group);
    if (!hold) free.push(s);
    else held.push({ name: s.name, reason: 'chain', ...(hold.until ? { retainUntil: hold.until } : {}) });
  }
  return { free, held };
}

/**
 * Splits what the retention plan deletes by the locks: a snapshot whose lock lasts past `now` is
 * held, and with a held delta its whole group (see `holdGroups`). `lockOf` gives a snapshot's
 * retain-until date (undefined: not locked, as far as is known).
 */
export function splitLocked(planned: readonly SnapshotRef[], all: readonly SnapshotRef[], lockOf: (s: SnapshotRef) => Date | undefined, now: Date): LockedDeletes {
  const held: HeldSnapshot[] = [];
  const heldDeltas: { ref: SnapshotRef; retainUntil: Date }[] = [];
  const unlocked: SnapshotRef[] = [];
  for (const s of planned) {
    const until = lockOf(s);
    if (until && until > now) {
      held.push({ name: s.name, retainUntil: until, reason: 'lock' });
      if (s.kind === 'delta') heldDeltas.push({ ref: s, retainUntil: until });
    } else unlocked.push(s);
  }
  const byGroup = holdGroups(unlocked, heldDeltas, all);
  return {
    deltas: byGroup.free.filter((s) => s.kind === 'delta'),
    fulls: byGroup.free.filter((s) => s.kind === 'full'),
    held: [...held, ...byGroup.held],
  };
}

/** What `/status` tells of the snapshots retention waits for. */
export interface GcLockView {
  /** When retention last ran. */
  ranAt: string;
  deleted: number;
  /** Snapshots retention would delete but a lock holds, the soonest free first (undated ones last). */
  lockedUntil: { name: string; retainUntil?: string; reason: HeldSnapshot['reason'] }[];
  /** The held snapshot retention deletes next, and from when (its first run after that). */
  next?: { name: string; at: string };
}

export function gcLockView(held: readonly HeldSnapshot[], deleted: number, ranAt: Date): GcLockView {
  const sorted = [...held].sort((a, b) => (a.retainUntil?.getTime() ?? Infinity) - (b.retainUntil?.getTime() ?? Infinity) || (a.name < b.name ? -1 : 1));
  const view: GcLockView = {
    ranAt: ranAt.toISOString(),
    deleted,
    lockedUntil: sorted.map((h) => ({ name: h.name, reason: h.reason, ...(h.retainUntil ? { retainUntil: h.retainUntil.toISOString() } : {}) })),
  };
  const first = sorted[0];
  if (first?.retainUntil) view.next = { name: first.name, at: first.retainUntil.toISOString() };
  return view;
}
