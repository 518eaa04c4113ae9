import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { latestFull, restorableChain } from '../../src/snapshot/chain.js';
import type { SnapshotRef } from '../../src/snapshot/names.js';
import { planRetention } from '../../src/snapshot/retention.js';
import { DAY, history, HOUR, NOW, policies, snapshotRef as ref } from '../helpers/snapshot-history.js';

test('retention: never deletes the latest full snapshot or a delta of its chain; keeps and deletes partition the listing', () => {
  fc.assert(
    fc.property(history, policies, (snapshots, policy) => {
      const plan = planRetention(snapshots, policy, NOW);
      assert.equal(plan.keep.length + plan.delete.length, snapshots.length);
      const kept = new Set(plan.keep);
      for (const s of plan.delete) assert.ok(!kept.has(s));
      const latest = latestFull(snapshots) as SnapshotRef;
      assert.ok(kept.has(latest), 'latest full snapshot deleted');
      const before = restorableChain(snapshots);
      for (const l of before.links) assert.ok(kept.has(l.delta), `${l.delta.name} of the latest chain deleted`);
      const after = restorableChain(plan.keep);
      assert.equal(after.full, before.full);
      assert.equal(after.lastRevision, before.lastRevision);
      assert.equal(after.contiguous, before.contiguous);
      // Every kept full snapshot still restores through the deltas that follow it up to the next full snapshot.
      const fullRevisions = snapshots.filter((s) => s.kind === 'full').map((s) => s.lastRevision);
      const owner = (d: SnapshotRef): number => Math.max(...fullRevisions.filter((r) => r < d.lastRevision));
      for (const f of plan.keep.filter((s) => s.kind === 'full')) {
        for (const l of restorableChain(snapshots, f).links) {
          if (owner(l.delta) === f.lastRevision) assert.ok(kept.has(l.delta), `${l.delta.name} after kept ${f.name} deleted`);
        }
      }
    }),
    { numRuns: 500 },
  );
});

test('retention limit: keeps the newest max-backups full snapshots and the deltas after each', () => {
  fc.assert(
    fc.property(history, fc.integer({ min: 1, max: 10 }), (snapshots, maxBackups) => {
      const plan = planRetention(snapshots, { policy: 'limit', maxBackups }, NOW);
      const fulls = snapshots.filter((s) => s.kind === 'full').sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.lastRevision - a.lastRevision);
      const keptFulls = plan.keep.filter((s) => s.kind === 'full');
      assert.deepEqual(new Set(keptFulls), new Set(fulls.slice(0, maxBackups)));
      const oldestKept = Math.min(...keptFulls.map((f) => f.lastRevision));
      for (const d of plan.delete.filter((s) => s.kind === 'delta')) assert.ok(d.lastRevision <= oldestKept, `${d.name} deleted though it follows a kept full snapshot`);
      for (const d of plan.keep.filter((s) => s.kind === 'delta')) assert.ok(d.lastRevision > oldestKept, `${d.name} kept though it precedes every kept full snapshot`);
    }),
    { numRuns: 500 },
  );
});

test('retention exponential: all of the last hour, then one per hour for a day, per day for a week, per week for four weeks', () => {
  fc.assert(
    fc.property(history, (snapshots) => {
      const plan = planRetention(snapshots, { policy: 'exponential', maxBackups: 7 }, NOW);
      const kept = new Set(plan.keep);
      const latest = latestFull(snapshots) as SnapshotRef;
      const fulls = snapshots.filter((s) => s.kind === 'full');
      const buckets = new Map<string, SnapshotRef[]>();
      for (const f of fulls) {
        const age = NOW.getTime() - f.createdAt.getTime();
        const t = f.createdAt.getTime();
        if (age < HOUR) {
          assert.ok(kept.has(f), `${f.name} of the last hour deleted`);
          continue;
        }
        const key = age < DAY ? `h${Math.floor(t / HOUR)}` : age < 7 * DAY ? `d${Math.floor(t / DAY)}` : age < 28 * DAY ? `w${Math.floor(t / (7 * DAY))}` : undefined;
        if (key === undefined) {
          assert.ok(!kept.has(f) || f === latest, `${f.name} older than four weeks kept`);
          continue;
        }
        buckets.set(key, [...(buckets.get(key) ?? []), f]);
      }
      for (const [key, members] of buckets) {
        const keptHere = members.filter((f) => kept.has(f) && f !== latest);
        assert.ok(keptHere.length <= 1, `bucket ${key} keeps ${keptHere.length}`);
        const newest = members.reduce((a, b) => (b.createdAt.getTime() > a.createdAt.getTime() ? b : a));
        assert.ok(kept.has(newest) || members.includes(latest), `bucket ${key} lost its newest full snapshot`);
      }
    }),
    { numRuns: 500 },
  );
});

test('retention: a store without a full snapshot is left alone', () => {
  const deltas = [ref('delta', 1, 5, NOW.getTime() - 90 * DAY), ref('delta', 6, 9, NOW.getTime())];
  assert.deepEqual(planRetention(deltas, { policy: 'limit', maxBackups: 1 }, NOW).delete, []);
});
