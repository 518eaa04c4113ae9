import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { restorableChain } from '../../src/snapshot/chain.js';
import { gcLockView, holdGroups, splitLocked } from '../../src/snapshot/gc-locks.js';
import type { SnapshotRef } from '../../src/snapshot/names.js';
import { ownerRevisionOf, planRetention } from '../../src/snapshot/retention.js';
import { DAY, history, HOUR, NOW, policies, snapshotRef as ref } from '../helpers/snapshot-history.js';

/** Each snapshot's lock: none, or an offset from NOW (past or future), drawn per snapshot. */
const lockOffsets = fc.array(fc.option(fc.integer({ min: -2 * DAY, max: 2 * DAY }), { nil: undefined }), { minLength: 200, maxLength: 200 });

test('locks: what retention deletes now is never locked, never leaves a held delta without its full snapshot, and never changes the latest chain', () => {
  fc.assert(
    fc.property(history, policies, lockOffsets, (snapshots, policy, offsets) => {
      const locks = new Map(snapshots.map((s, i) => [s.name, offsets[i % offsets.length] === undefined ? undefined : new Date(NOW.getTime() + (offsets[i % offsets.length] as number))]));
      const plan = planRetention(snapshots, policy, NOW);
      const split = splitLocked(plan.delete, snapshots, (s) => locks.get(s.name), NOW);

      const now = [...split.deltas, ...split.fulls];
      assert.deepEqual([...now.map((s) => s.name), ...split.held.map((h) => h.name)].sort(), plan.delete.map((s) => s.name).sort(), 'deleted and held partition the plan');
      for (const s of now) assert.ok(!((locks.get(s.name) ?? NOW) > NOW), `${s.name} deleted while locked`);
      for (const h of split.held.filter((x) => x.reason === 'lock')) assert.ok((locks.get(h.name) as Date) > NOW);

      const fullRevisions = snapshots.filter((s) => s.kind === 'full').map((s) => s.lastRevision);
      const deletedFulls = new Set(split.fulls.map((f) => f.lastRevision));
      const byName = new Map(snapshots.map((s) => [s.name, s]));
      for (const h of split.held) {
        const s = byName.get(h.name) as SnapshotRef;
        if (s.kind === 'delta') assert.ok(!deletedFulls.has(ownerRevisionOf(s, fullRevisions) ?? -1), `${s.name} held but its full snapshot deleted`);
      }

      const deletedNames = new Set(now.map((s) => s.name));
      const left = snapshots.filter((s) => !deletedNames.has(s.name));
      const before = restorableChain(snapshots);
      const after = restorableChain(left);
      assert.equal(after.full?.name, before.full?.name);
      assert.equal(after.lastRevision, before.lastRevision);
    }),
    { numRuns: 400 },
  );
});

test('locks: uploads locked for a fixed time are all deletable once that time has passed since the newest, and none is before its own lock ends', () => {
  fc.assert(
    fc.property(history, policies, fc.integer({ min: 1, max: 30 }), (snapshots, policy, days) => {
      const retention = days * DAY;
      const lockOf = (s: SnapshotRef): Date => new Date(s.createdAt.getTime() + retention);
      const plan = planRetention(snapshots, policy, NOW);
      const newest = Math.max(...plan.delete.map((s) => s.createdAt.getTime()), 0);
      const later = new Date(Math.max(NOW.getTime(), newest + retention + 1));
      const free = splitLocked(plan.delete, snapshots, lockOf, later);
      assert.equal(free.held.length, 0);
      const nowSplit = splitLocked(plan.delete, snapshots, lockOf, NOW);
      for (const s of [...nowSplit.deltas, ...nowSplit.fulls]) assert.ok(lockOf(s) <= NOW);
    }),
    { numRuns: 200 },
  );
});

test('locks: a full snapshot and its unlocked deltas stay with a locked delta, until the last lock of the group ends', () => {
  const t0 = NOW.getTime() - 3 * HOUR;
  const f1 = ref('full', 0, 10, t0);
  const d1 = ref('delta', 11, 20, t0 + 60_000);
  const d2 = ref('delta', 21, 30, t0 + 120_000);
  const f2 = ref('full', 0, 30, t0 + 180_000);
  const d3 = ref('delta', 31, 40, t0 + 240_000);
  const all = [f1, d1, d2, f2, d3];
  const d2Until = new Date(NOW.getTime() + HOUR);
  const split = splitLocked([f1, d1, d2], all, (s) => (s === d2 ? d2Until : undefined), NOW);
  assert.deepEqual(split.deltas, []);
  assert.deepEqual(split.fulls, []);
  assert.deepEqual(
    split.held.map((h) => [h.name, h.reason, h.retainUntil?.toISOString()]),
    [
      [d2.name, 'lock', d2Until.toISOString()],
      [f1.name, 'chain', d2Until.toISOString()],
      [d1.name, 'chain', d2Until.toISOString()],
    ],
  );
  // After the lock: all three go, deltas before their full snapshot.
  const later = splitLocked([f1, d1, d2], all, (s) => (s === d2 ? d2Until : undefined), new Date(d2Until.getTime() + 1));
  assert.deepEqual(later.deltas, [d1, d2]);
  assert.deepEqual(later.fulls, [f1]);
});

test('locks: a delete refused without a date holds its full snapshot without a date; other groups are free', () => {
  const f1 = ref('full', 0, 10, NOW.getTime() - 5 * HOUR);
  const d1 = ref('delta', 11, 20, NOW.getTime() - 5 * HOUR + 1000);
  const f2 = ref('full', 0, 20, NOW.getTime() - 4 * HOUR);
  const f3 = ref('full', 0, 30, NOW.getTime() - 3 * HOUR);
  const out = holdGroups([f1, f2], [{ ref: d1 }], [f1, d1, f2, f3]);
  assert.deepEqual(out.free, [f2]);
  assert.deepEqual(out.held, [{ name: f1.name, reason: 'chain' }]);
});

test('locks: /status lists the held snapshots soonest first, undated last, and names the next deletion', () => {
  const a = new Date(NOW.getTime() + 2 * HOUR);
  const b = new Date(NOW.getTime() + HOUR);
  const view = gcLockView(
    [
      { name: 'v2/Full-a', retainUntil: a, reason: 'lock' },
      { name: 'v2/Incr-b', reason: 'lock' },
      { name: 'v2/Full-c', retainUntil: b, reason: 'chain' },
    ],
    3,
    NOW,
  );
  assert.deepEqual(view, {
    ranAt: NOW.toISOString(),
    deleted: 3,
    lockedUntil: [
      { name: 'v2/Full-c', reason: 'chain', retainUntil: b.toISOString() },
      { name: 'v2/Full-a', reason: 'lock', retainUntil: a.toISOString() },
      { name: 'v2/Incr-b', reason: 'lock' },
    ],
    next: { name: 'v2/Full-c', at: b.toISOString() },
  });
  assert.equal(gcLockView([{ name: 'x', reason: 'lock' }], 0, NOW).next, undefined);
});
