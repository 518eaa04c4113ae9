import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { DeltaEvent } from '../../src/snapshot/delta-format.js';
import { parseSnapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import { snapshotRef } from '../helpers/snapshot-history.js';
import { chainClusterId, liveKeyChange, planFromFullDb, planRestore, RestoreError, revisionBatches } from '../../src/restore/plan.js';

const T0 = Date.UTC(2026, 0, 1);

const ref = (kind: 'full' | 'delta', start: number, last: number, secs = 0): SnapshotRef => snapshotRef(kind, start, last, T0 + secs * 1000);

function ev(rev: number, opts: { type?: 'put' | 'delete'; key?: string; version?: number; secs?: number } = {}): DeltaEvent {
  return {
    type: opts.type ?? 'put',
    kv: { key: Buffer.from(opts.key ?? `/k/${rev}`), value: Buffer.from('v'), createRevision: rev, modRevision: rev, version: opts.version ?? 1, lease: '0' },
    time: new Date(T0 + (opts.secs ?? rev) * 1000).toISOString(),
  };
}

function refused(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof RestoreError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

describe('planRestore', () => {
  it('refuses an empty store, and deltas without a full snapshot', () => {
    refused(() => planRestore([]), 'no_backup', /no snapshot/);
    refused(() => planRestore([ref('delta', 1, 5)]), 'no_backup', /no full snapshot/);
  });

  it('takes the latest full snapshot and every delta after it', () => {
    const listing = [ref('full', 0, 10, 1), ref('delta', 11, 20, 2), ref('full', 0, 20, 3), ref('delta', 21, 30, 4), ref('delta', 31, 40, 5)];
    const plan = planRestore(listing);
    assert.equal(plan.full.lastRevision, 20);
    assert.deepEqual(
      plan.links.map((l) => l.delta.startRevision),
      [21, 31],
    );
    assert.equal(plan.targetRevision, 40);
  });

  it('refuses a chain with a gap unless the target stops before it', () => {
    const listing = [ref('full', 0, 10), ref('delta', 11, 20), ref('delta', 26, 30)];
    refused(() => planRestore(listing), 'gap', /21-25 are missing.*--to-revision 20/);
    refused(() => planRestore(listing, { toRevision: 28 }), 'gap', /21-25/);
    assert.equal(planRestore(listing, { toRevision: 20 }).targetRevision, 20);
  });

  it('restores to a revision from the newest full snapshot at or before it, and only the deltas needed', () => {
    const listing = [ref('full', 0, 10), ref('delta', 11, 20), ref('delta', 21, 30), ref('full', 0, 30), ref('delta', 31, 40)];
    const plan = planRestore(listing, { toRevision: 15 });
    assert.equal(plan.full.lastRevision, 10);
    assert.deepEqual(
      plan.links.map((l) => l.delta.lastRevision),
      [20],
    );
    assert.equal(plan.targetRevision, 15);
    assert.equal(planRestore(listing, { toRevision: 30 }).full.lastRevision, 30);
    refused(() => planRestore(listing, { toRevision: 41 }), 'target_not_covered', /end at revision 40/);
    refused(() => planRestore([ref('full', 0, 10)], { toRevision: 5 }), 'target_not_covered', /no full snapshot at or before revision 5/);
  });

  it('restores to a time from the newest full snapshot taken at or before it', () => {
    const listing = [ref('full', 0, 10, 100), ref('delta', 11, 20, 150), ref('full', 0, 20, 200), ref('delta', 21, 30, 250)];
    const plan = planRestore(listing, { toTime: new Date(T0 + 180_000) });
    assert.equal(plan.full.lastRevision, 10);
    assert.ok(plan.toTime);
    refused(() => planRestore(listing, { toTime: new Date(T0 + 50_000) }), 'target_not_covered');
  });

  it('rejects bad targets with the flag named', () => {
    refused(() => planRestore([ref('full', 0, 10)], { toRevision: 0 }), 'bad_request', /--to-revision/);
    refused(() => planRestore([ref('full', 0, 10)], { toRevision: 12, toTime: new Date() }), 'bad_request', /not both/);
    refused(() => planRestore([ref('full', 0, 10)], { toTime: new Date('nope') }), 'bad_request', /--to-time/);
  });

  it('property: the plan never goes past the chain, and never starts after the target', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 0, max: 8 })), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 100 }), (deltas, target) => {
        const listing = [ref('full', 0, 5), ...deltas.map(([s, len]) => ref('delta', s, s + len))];
        try {
          const plan = planRestore(listing, { toRevision: target });
          assert.ok(plan.full.lastRevision <= target);
          assert.ok(plan.targetRevision <= plan.chain.lastRevision);
          for (const l of plan.links) assert.ok(l.skipThrough < target);
        } catch (err) {
          assert.ok(err instanceof RestoreError && ['gap', 'target_not_covered'].includes(err.code), String(err));
        }
      }),
    );
  });
});

/** A name exactly as gardener's snapshotter writes it (Kind-%08d-%08d-<unix><suffix>[.final]). */
function gardener(name: string): SnapshotRef {
  const r = parseSnapshotName(`v2/${name}`);
  assert.ok(r, `${name} does not parse`);
  return r;
}

/** The revisions a plan applies, as the replay would: each link's events from the deltas' names, minus what is already applied. */
function appliedRevisions(plan: ReturnType<typeof planRestore>): number[] {
  const out: number[] = [];
  let after = plan.full.lastRevision;
  for (const l of plan.links) {
    const events = Array.from({ length: l.delta.lastRevision - l.delta.startRevision + 1 }, (_, i) => ev(l.delta.startRevision + i));
    const cut = revisionBatches(l.delta.name, events, l.skipThrough, after, plan.targetRevision);
    for (const b of cut.batches) out.push(b.revision);
    after = out[out.length - 1] ?? after;
    if (cut.reachedTarget) break;
  }
  return out;
}

describe("gardener's naming faults", () => {
  // #1044: the name's revision is read before the snapshot is taken; writes in between land in the db.
  it('#1044 with no delta after it: the restore reaches the revision inside the db, not the one in the name', () => {
    const listing = [gardener('Full-00000000-00000008-1700000000.gz')];
    const byName = planRestore(listing);
    assert.equal(byName.targetRevision, 8);
    const byDb = planFromFullDb(listing, byName.full, 11);
    assert.equal(byDb.targetRevision, 11);
    assert.equal(byDb.full.name, byName.full.name);
    assert.deepEqual(byDb.links, []);
  });

  it('#1044 with deltas inside the db: they drop out, and the one reaching past it applies only its later revisions', () => {
    // gardener's watch starts after the name's revision, so its first deltas repeat what the db holds.
    const listing = [
      gardener('Full-00000000-00000008-1700000000.gz'),
      gardener('Incr-00000009-00000010-1700000002.gz'),
      gardener('Incr-00000011-00000011-1700000004.gz'),
      gardener('Incr-00000012-00000015-1700000006.gz'),
    ];
    const byName = planRestore(listing);
    assert.equal(byName.links.length, 3);
    const byDb = planFromFullDb(listing, byName.full, 11);
    assert.deepEqual(
      byDb.links.map((l) => [l.delta.startRevision, l.skipThrough]),
      [[12, 11]],
    );
    assert.equal(byDb.targetRevision, 15);
    assert.deepEqual(appliedRevisions(byDb), [12, 13, 14, 15]);
  });

  it('#1044 with the first delta overlapping the db: applied from the revision after the db', () => {
    const listing = [gardener('Full-00000000-00000008-1700000000.gz'), gardener('Incr-00000009-00000014-1700000002.gz')];
    const byDb = planFromFullDb(listing, planRestore(listing).full, 11);
    assert.deepEqual(
      byDb.links.map((l) => l.skipThrough),
      [11],
    );
    assert.deepEqual(appliedRevisions(byDb), [12, 13, 14]);
  });

  it('#1044 and a target: a target the db is already past is refused, one after it is reached', () => {
    const listing = [gardener('Full-00000000-00000008-1700000000.gz'), gardener('Incr-00000009-00000014-1700000002.gz')];
    const full = planRestore(listing, { toRevision: 9 }).full;
    refused(() => planFromFullDb(listing, full, 11, { toRevision: 9 }), 'target_not_covered', /named for revision 8 but holds revision 11, past the target 9/);
    const plan = planFromFullDb(listing, full, 11, { toRevision: 13 });
    assert.equal(plan.targetRevision, 13);
    assert.deepEqual(appliedRevisions(plan), [12, 13]);
    refused(() => planFromFullDb(listing, full, 7), 'corrupt', /holds revision 7/);
  });

  it('a .final full snapshot (written when gardener stops) starts the chain the next leader continues', () => {
    for (const suffix of ['.gz.final', '.final']) {
      const final = gardener(`Full-00000000-00000020-1700000100${suffix}`);
      assert.equal(final.final, true);
      assert.equal(final.compression, suffix === '.final' ? 'none' : 'gzip');
      const listing = [gardener('Full-00000000-00000010-1700000000.gz'), gardener('Incr-00000011-00000020-1700000050.gz'), final, gardener('Incr-00000021-00000025-1700000200.gz')];
      const plan = planRestore(listing);
      assert.equal(plan.full.name, final.name);
      assert.deepEqual(appliedRevisions(plan), [21, 22, 23, 24, 25]);
    }
  });

  it('a first delta that starts below the full snapshot: only its revisions after the full apply', () => {
    const listing = [gardener('Full-00000000-00000010-1700000000.gz'), gardener('Incr-00000005-00000013-1700000002.gz'), gardener('Incr-00000014-00000016-1700000004.gz')];
    const plan = planRestore(listing);
    assert.deepEqual(
      plan.links.map((l) => l.skipThrough),
      [10, 13],
    );
    assert.deepEqual(appliedRevisions(plan), [11, 12, 13, 14, 15, 16]);
  });

  it('deltas after a compaction: the compacted full snapshot, uploaded after deltas that go past it, starts the chain by revision, not by time', () => {
    // `etcdbrctl compact` restores the chain, compacts it and uploads a full snapshot at the chain's
    // last revision; the live snapshotter's deltas after that revision may carry earlier times.
    const compacted = gardener('Full-00000000-00000030-1700000900.gz');
    const listing = [
      gardener('Full-00000000-00000010-1700000000.gz'),
      gardener('Incr-00000011-00000020-1700000100.gz'),
      gardener('Incr-00000021-00000030-1700000200.gz'),
      gardener('Incr-00000031-00000040-1700000300.gz'),
      compacted,
      gardener('Incr-00000041-00000050-1700001000.gz'),
    ];
    const plan = planRestore(listing);
    assert.equal(plan.full.name, compacted.name);
    assert.deepEqual(
      plan.links.map((l) => l.delta.startRevision),
      [31, 41],
    );
    assert.equal(plan.targetRevision, 50);
    // A restore to a revision the compaction removed from history starts from the older full snapshot.
    const older = planRestore(listing, { toRevision: 25 });
    assert.equal(older.full.lastRevision, 10);
    assert.deepEqual(
      appliedRevisions(older),
      Array.from({ length: 15 }, (_, i) => 11 + i),
    );
  });
});

describe('chainClusterId', () => {
  it('accepts objects without an ID, and one ID however it is written', () => {
    assert.equal(chainClusterId([{ name: 'a', clusterId: undefined }]), undefined);
    assert.equal(
      chainClusterId(
        [
          { name: 'a', clusterId: 'ABC' },
          { name: 'b', clusterId: undefined },
          { name: 'c', clusterId: '0abc' },
        ],
        '0xabc',
      ),
      'ABC',
    );
  });
  it('refuses a chain mixing clusters, or of another cluster', () => {
    refused(
      () =>
        chainClusterId([
          { name: 'a', clusterId: '1' },
          { name: 'b', clusterId: '2' },
        ]),
      'foreign_cluster',
      /b belongs to cluster 2 but a to cluster 1/,
    );
    refused(() => chainClusterId([{ name: 'a', clusterId: '1' }], '2'), 'foreign_cluster', /not to the expected cluster 2/);
  });
});

describe('revisionBatches', () => {
  it('groups one revision into one batch and skips what is already applied', () => {
    const events = [ev(9), ev(10), ev(11, { key: 'a' }), ev(11, { key: 'b', type: 'delete' }), ev(12)];
    const cut = revisionBatches('d', events, 10, 10, 100);
    assert.deepEqual(
      cut.batches.map((b) => [b.revision, b.events.length]),
      [
        [11, 2],
        [12, 1],
      ],
    );
    assert.equal(cut.reachedTarget, false);
  });
  it('stops at the target revision, inside the delta', () => {
    const cut = revisionBatches('d', [ev(11), ev(12), ev(13)], 10, 10, 12);
    assert.deepEqual(
      cut.batches.map((b) => b.revision),
      [11, 12],
    );
    assert.equal(cut.reachedTarget, true);
  });
  it('stops before the first revision written after the target time', () => {
    const cut = revisionBatches('d', [ev(11, { secs: 1 }), ev(12, { secs: 2 }), ev(13, { secs: 3 })], 10, 10, 13, new Date(T0 + 2_500));
    assert.deepEqual(
      cut.batches.map((b) => b.revision),
      [11, 12],
    );
    assert.equal(cut.reachedTarget, true);
  });
  it('calls a revision missing inside a delta a gap, and revisions going back corruption', () => {
    refused(() => revisionBatches('Incr-x', [ev(11), ev(13)], 10, 10, 20), 'gap', /Incr-x: revisions 12-12 are missing/);
    refused(() => revisionBatches('Incr-x', [ev(12)], 10, 10, 20), 'gap', /11-11/);
    refused(() => revisionBatches('Incr-x', [ev(11), ev(12), ev(11, { key: 'z' })], 10, 10, 20), 'corrupt', /go back/);
  });
  it('counts live keys: a first put adds one, a delete removes one, an overwrite neither', () => {
    assert.equal(liveKeyChange({ revision: 1, events: [ev(1, { version: 1 }), ev(1, { version: 3, key: 'x' }), ev(1, { type: 'delete', key: 'y' })] }), 0);
    assert.equal(liveKeyChange({ revision: 1, events: [ev(1, { version: 1 })] }), 1);
  });
});
