import type { SnapshotRef } from './names.js';

/** Revisions `from..to` (inclusive) that no stored delta covers. */
export interface RevisionGap {
  from: number;
  to: number;
}

/** One delta of a chain, and the revisions of it that a restore applies. */
export interface ChainLink {
  delta: SnapshotRef;
  /** Events at or below this revision are already in the chain (overlap at a leader handoff). */
  skipThrough: number;
}

export interface Chain {
  /** The full snapshot a restore starts from; undefined when the store has none. */
  full: SnapshotRef | undefined;
  /** Deltas to apply after it, in order, each starting at or before the revision after the previous one. */
  links: ChainLink[];
  /** The revision a restore of this chain reaches: the end of the contiguous part. */
  lastRevision: number;
  /** True when nothing is missing between the full snapshot and the newest stored delta. */
  contiguous: boolean;
  /** Revisions missing after `lastRevision`, in order; empty when contiguous. */
  gaps: RevisionGap[];
  /** Deltas stored after a gap: unusable until the gap is healed by a newer full snapshot. */
  stranded: SnapshotRef[];
}

function newer(a: SnapshotRef, b: SnapshotRef): boolean {
  if (a.lastRevision !== b.lastRevision) return a.lastRevision > b.lastRevision;
  if (a.createdAt.getTime() !== b.createdAt.getTime()) return a.createdAt.getTime() > b.createdAt.getTime();
  return a.name > b.name;
}

/** The full snapshot with the highest revision (the newest one when two hold the same revision). */
export function latestFull(snapshots: readonly SnapshotRef[]): SnapshotRef | undefined {
  let best: SnapshotRef | undefined;
  for (const s of snapshots) if (s.kind === 'full' && (!best || newer(s, best))) best = s;
  return best;
}

/**
 * The restorable chain of a listing: the latest full snapshot and the fewest deltas after it that
 * cover every revision up to the newest delta. Deltas may overlap (two backup leaders around a
 * handoff both uploaded the same revisions; anchor bug #1043) or be wholly covered by others: those
 * are skipped, and a link records which of its revisions are already applied. A revision no delta
 * covers is a gap: the chain ends before it and the gap is reported, never stepped over.
 */
export function restorableChain(snapshots: readonly SnapshotRef[], fromFull?: SnapshotRef): Chain {
  const full = fromFull ?? latestFull(snapshots);
  if (!full) return { full: undefined, links: [], lastRevision: 0, contiguous: false, gaps: [], stranded: [] };
  const candidates = snapshots.filter((s) => s.kind === 'delta' && s.lastRevision > full.lastRevision).sort((a, b) => a.startRevision - b.startRevision || b.lastRevision - a.lastRevision);

  const links: ChainLink[] = [];
  let covered = full.lastRevision;
  let i = 0;
  // Greedy interval cover: of the deltas that start no later than the next missing revision, take
  // the one that reaches furthest; stop at the first revision none of them covers.
  for (;;) {
    let best: SnapshotRef | undefined;
    while (i < candidates.length && (candidates[i] as SnapshotRef).startRevision <= covered + 1) {
      const c = candidates[i] as SnapshotRef;
      if (c.lastRevision > covered && (!best || c.lastRevision > best.lastRevision)) best = c;
      i++;
    }
    if (!best) break;
    links.push({ delta: best, skipThrough: covered });
    covered = best.lastRevision;
  }
  const lastRevision = covered;
  const stranded = candidates.filter((c) => c.lastRevision > lastRevision);
  // Every hole up to the newest delta, so an operator sees how much is missing.
  const gaps: RevisionGap[] = [];
  let reach = lastRevision;
  for (const s of stranded) {
    if (s.startRevision > reach + 1) gaps.push({ from: reach + 1, to: s.startRevision - 1 });
    reach = Math.max(reach, s.lastRevision);
  }
  return { full, links, lastRevision, contiguous: gaps.length === 0, gaps, stranded };
}

/** The revision a delta uploaded now must start at to extend the chain without a gap. */
export function nextDeltaStart(chain: Chain): number {
  return chain.lastRevision + 1;
}
