import fc from 'fast-check';
import { snapshotName, type SnapshotRef } from '../../src/snapshot/names.js';

// Backup histories as the sidecar writes them, for the property tests of retention and of its locks.

export const HOUR = 3600_000;
export const DAY = 24 * HOUR;
export const NOW = new Date(Date.UTC(2026, 5, 15, 12, 30));

/** A snapshot as the sidecar names it, created at `at` (ms, to the second, as the name keeps it). */
export function snapshotRef(kind: 'full' | 'delta', start: number, last: number, at: number): SnapshotRef {
  const createdAt = new Date(Math.floor(at / 1000) * 1000);
  return {
    name: snapshotName({ kind, startRevision: start, lastRevision: last, createdAt, compression: 'gzip' }),
    kind,
    startRevision: start,
    lastRevision: last,
    createdAt,
    compression: 'gzip',
    final: false,
  };
}

/**
 * A backup history over up to 40 days ending now: a full snapshot every so often, deltas in
 * between, revisions rising with time (as the sidecar writes them).
 */
export const history = fc
  .array(fc.record({ gapMinutes: fc.integer({ min: 1, max: 600 }), deltas: fc.integer({ min: 0, max: 4 }), writes: fc.integer({ min: 0, max: 50 }) }), { minLength: 1, maxLength: 120 })
  .map((steps) => {
    const totalMinutes = steps.reduce((n, s) => n + s.gapMinutes, 0);
    const span = Math.min(totalMinutes * 60_000, 40 * DAY);
    const scale = span / (totalMinutes * 60_000);
    let t = NOW.getTime() - span;
    let rev = 1;
    const out: SnapshotRef[] = [];
    for (const s of steps) {
      out.push(snapshotRef('full', 0, rev, t));
      for (let d = 0; d < s.deltas; d++) {
        const last = rev + 1 + (s.writes % 7);
        out.push(snapshotRef('delta', rev + 1, last, t + ((d + 1) * s.gapMinutes * 60_000 * scale) / (s.deltas + 1)));
        rev = last;
      }
      t += s.gapMinutes * 60_000 * scale;
    }
    return out;
  });

export const policies = fc.oneof(
  fc.constant({ policy: 'exponential' as const, maxBackups: 7 }),
  fc.integer({ min: 1, max: 10 }).map((n) => ({ policy: 'limit' as const, maxBackups: n })),
);
