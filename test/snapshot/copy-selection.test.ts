import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { selectForCopy } from '../../src/snapshot/copy.js';
import { snapshotName, type SnapshotRef } from '../../src/snapshot/names.js';

function ref(kind: 'full' | 'delta', startRevision: number, lastRevision: number, secs: number): SnapshotRef {
  const createdAt = new Date(secs * 1000);
  return { name: snapshotName({ kind, startRevision, lastRevision, createdAt, compression: 'gzip' }), kind, startRevision, lastRevision, createdAt, compression: 'gzip', final: false };
}

const LISTING = [ref('delta', 11, 20, 120), ref('full', 0, 10, 100), ref('delta', 21, 30, 140), ref('full', 0, 30, 200), ref('delta', 31, 40, 220), ref('delta', 41, 50, 240)];

describe('what copy copies', () => {
  it('everything, oldest first, each full snapshot before the deltas that build on it', () => {
    assert.deepEqual(
      selectForCopy(LISTING, {}).map((s) => `${s.kind}:${s.lastRevision}`),
      ['full:10', 'delta:20', 'full:30', 'delta:30', 'delta:40', 'delta:50'],
    );
  });

  it('--chains N: the newest N full snapshots and only the deltas after the oldest of them', () => {
    assert.deepEqual(
      selectForCopy(LISTING, { chains: 1 }).map((s) => `${s.kind}:${s.lastRevision}`),
      ['full:30', 'delta:40', 'delta:50'],
    );
    assert.equal(selectForCopy(LISTING, { chains: 5 }).length, LISTING.length);
    assert.deepEqual(selectForCopy([ref('delta', 1, 5, 10)], { chains: 1 }), []);
  });

  it('--since: only what was created at or after the time', () => {
    assert.deepEqual(
      selectForCopy(LISTING, { since: new Date(220_000) }).map((s) => s.lastRevision),
      [40, 50],
    );
  });
});
