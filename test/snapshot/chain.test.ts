import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { restorableChain, type RevisionGap } from '../../src/snapshot/chain.js';
import { parseSnapshotName, snapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import { snapshotRef } from '../helpers/snapshot-history.js';

const T0 = Date.UTC(2026, 0, 1);

const ref = (kind: 'full' | 'delta', start: number, last: number, secs = 0): SnapshotRef => snapshotRef(kind, start, last, T0 + secs * 1000);

/** The revisions above `base` no delta covers, as intervals, up to the newest delta. */
function uncovered(base: number, deltas: SnapshotRef[]): RevisionGap[] {
  const max = Math.max(base, ...deltas.map((d) => d.lastRevision));
  const covered = new Set<number>();
  for (const d of deltas) for (let r = d.startRevision; r <= d.lastRevision; r++) covered.add(r);
  const gaps: RevisionGap[] = [];
  for (let r = base + 1; r <= max; r++) {
    if (covered.has(r)) continue;
    const last = gaps[gaps.length - 1];
    if (last && last.to === r - 1) last.to = r;
    else gaps.push({ from: r, to: r });
  }
  return gaps;
}

/** A history as two backup leaders would leave it: contiguous deltas, copies of some ranges, some lost. */
const history = fc
  .record({
    fullRevision: fc.integer({ min: 1, max: 50 }),
    cuts: fc.uniqueArray(fc.integer({ min: 1, max: 300 }), { maxLength: 25 }),
    overlaps: fc.array(fc.tuple(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 40 })), { maxLength: 6 }),
    lost: fc.array(fc.nat(), { maxLength: 3 }),
    olderFulls: fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 3 }),
  })
  .map(({ fullRevision, cuts, overlaps, lost, olderFulls }) => {
    const ends = cuts.map((c) => c + fullRevision).sort((a, b) => a - b);
    const deltas: SnapshotRef[] = [];
    let start = fullRevision + 1;
    for (const end of ends) {
      deltas.push(ref('delta', start, end, end));
      start = end + 1;
    }
    for (const [from, len] of overlaps) deltas.push(ref('delta', fullRevision + from, fullRevision + from + len, from + 1000));
    for (const l of lost) if (deltas.length > 0) deltas.splice(l % deltas.length, 1);
    // Older full snapshots and deltas before the latest full never take part in its chain.
    const older = olderFulls.map((r) => ref('full', 0, Math.min(r, fullRevision - 1) || 0, r)).filter((f) => f.lastRevision > 0);
    const stale = [ref('delta', 1, fullRevision, 5)];
    return { full: ref('full', 0, fullRevision, 10_000), deltas, others: [...older, ...stale] };
  });

test('chain: covers exactly the revisions the deltas cover, stops at the first gap, reports every gap', () => {
  fc.assert(
    fc.property(history, fc.infiniteStream(fc.nat()), ({ full, deltas, others }, noise) => {
      const listing = [full, ...deltas, ...others];
      // Listing order must not matter.
      const shuffled = listing
        .map((s) => [noise.next().value as number, s] as const)
        .sort((a, b) => a[0] - b[0])
        .map(([, s]) => s);
      const chain = restorableChain(shuffled);
      assert.equal(chain.full, full);
      const gaps = uncovered(
        full.lastRevision,
        deltas.filter((d) => d.lastRevision > full.lastRevision),
      );
      assert.deepEqual(chain.gaps, gaps);
      assert.equal(chain.contiguous, gaps.length === 0);
      const reach = gaps.length > 0 ? (gaps[0] as RevisionGap).from - 1 : Math.max(full.lastRevision, ...deltas.map((d) => d.lastRevision));
      assert.equal(chain.lastRevision, reach);
      // Links apply in order, each continuing exactly where the previous one ended.
      let through = full.lastRevision;
      for (const link of chain.links) {
        assert.equal(link.skipThrough, through);
        assert.ok(link.delta.startRevision <= through + 1, `${link.delta.name} starts after ${through + 1}`);
        assert.ok(link.delta.lastRevision > through);
        through = link.delta.lastRevision;
      }
      assert.equal(through, chain.lastRevision);
      for (const s of chain.stranded) assert.ok(s.lastRevision > chain.lastRevision);
    }),
    { numRuns: 2000 },
  );
});

test('chain: overlapping deltas from two leaders around a handoff (anchor bug #1043)', () => {
  const full = ref('full', 0, 100, 0);
  // Leader A uploaded 101-120 and 121-130; leader B, taking over, uploaded 115-140 and 141-150.
  const a1 = ref('delta', 101, 120, 1);
  const a2 = ref('delta', 121, 130, 2);
  const b1 = ref('delta', 115, 140, 3);
  const b2 = ref('delta', 141, 150, 4);
  const chain = restorableChain([b2, a2, full, b1, a1]);
  assert.deepEqual(
    chain.links.map((l) => [l.delta.name, l.skipThrough]),
    [
      [a1.name, 100],
      [b1.name, 120],
      [b2.name, 140],
    ],
  );
  assert.equal(chain.lastRevision, 150);
  assert.equal(chain.contiguous, true);
});

test('chain: a gap stops the chain and names the missing revisions', () => {
  const full = ref('full', 0, 100, 0);
  const chain = restorableChain([full, ref('delta', 101, 110, 1), ref('delta', 115, 120, 2), ref('delta', 121, 125, 3), ref('delta', 130, 131, 4)]);
  assert.equal(chain.lastRevision, 110);
  assert.equal(chain.contiguous, false);
  assert.deepEqual(chain.gaps, [
    { from: 111, to: 114 },
    { from: 126, to: 129 },
  ]);
  assert.equal(chain.stranded.length, 3);
});

test('chain: without a full snapshot there is nothing to restore', () => {
  const chain = restorableChain([ref('delta', 1, 10)]);
  assert.equal(chain.full, undefined);
  assert.equal(chain.contiguous, false);
});

test('names: round trip, the anchor layout, and anything else ignored', () => {
  const createdAt = new Date(1700000000 * 1000);
  const name = snapshotName({ kind: 'full', startRevision: 0, lastRevision: 42, createdAt, compression: 'gzip' });
  assert.equal(name, 'v2/Full-00000000-00000042-1700000000.gz');
  assert.deepEqual(parseSnapshotName(name), { name, kind: 'full', startRevision: 0, lastRevision: 42, createdAt, compression: 'gzip', final: false });
  assert.equal(snapshotName({ kind: 'delta', startRevision: 123456789, lastRevision: 123456790, createdAt, compression: 'none' }), 'v2/Incr-123456789-123456790-1700000000');
  assert.equal(parseSnapshotName('v2/Incr-00000043-00000051-1700000005.Z.final')?.final, true);
  assert.equal(parseSnapshotName('v2/Incr-00000043-00000051-1700000005.Z.final')?.compression, 'lzw');
  assert.equal(parseSnapshotName('v2/Incr-00000043-00000051-1700000005.zlib')?.compression, 'zlib');
  for (const other of ['v2/Full-00000000-00000042-1700000000.gz/0000000001', 'v1/Backup-1/Full-0-1-1', 'v2/Incr-00000052-00000051-1700000005', 'members/m1.json', 'v2/Full-1-2', 'v2/Full-0-1-1.bz2']) {
    assert.equal(parseSnapshotName(other), undefined, other);
  }
  fc.assert(
    fc.property(
      fc.constantFrom('full' as const, 'delta' as const),
      fc.nat(),
      fc.nat(),
      fc.integer({ min: 0, max: 4_000_000_000 }),
      fc.constantFrom('gzip' as const, 'zlib' as const, 'lzw' as const, 'none' as const),
      (kind, a, b, secs, compression) => {
        const [start, last] = a <= b ? [a, b] : [b, a];
        const s = { kind, startRevision: start, lastRevision: last, createdAt: new Date(secs * 1000), compression };
        assert.deepEqual(parseSnapshotName(snapshotName(s)), { ...s, name: snapshotName(s), final: false });
      },
    ),
  );
});
