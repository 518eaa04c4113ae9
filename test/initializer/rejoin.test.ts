import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SeenHeartbeat } from '../../src/cluster/heartbeat-ages.js';
import { rejoinRecovery, type RejoinFacts } from '../../src/initializer/rejoin.js';

const beat = (name: string, over: Partial<SeenHeartbeat> = {}): SeenHeartbeat => ({ name, role: 'unknown', apiURL: '', time: '2026-01-01T00:00:00Z', etcdUp: false, ageMs: 500, ...over });
const base: RejoinFacts = { self: 'm3', idle: true, etcdUp: true, noQuorumSinceMs: 0, nowMs: 31_000, ttlMs: 30_000, heartbeats: [beat('m1', { waiting: { dataLost: true } }), beat('m2')] };

describe('a member whose etcd runs joins a recovery only when its cluster is gone for good', () => {
  it('initializes again: no quorum for a whole TTL while a live member reports its data lost', () => {
    assert.match(rejoinRecovery(base) ?? '', /no quorum for 31 s and m1 lost its data/);
  });

  it('initializes again: no quorum for a TTL while a live member is in another cluster with quorum (a recovery went on without it)', () => {
    const f: RejoinFacts = { ...base, clusterId: 'c1', heartbeats: [beat('m1', { etcdUp: true, inQuorum: true, clusterId: 'r1' })] };
    assert.match(rejoinRecovery(f) ?? '', /m1 is in cluster r1, which has quorum/);
    assert.equal(rejoinRecovery({ ...f, heartbeats: [beat('m1', { etcdUp: true, inQuorum: true, clusterId: 'c1' })] }), undefined, 'its own cluster');
    assert.equal(rejoinRecovery({ ...f, heartbeats: [beat('m1', { etcdUp: true, inQuorum: false, clusterId: 'r1' })] }), undefined, 'no quorum there either');
  });

  it('never for a quorum lost for less than a TTL (an election, a slow peer)', () => {
    assert.equal(rejoinRecovery({ ...base, nowMs: 29_999 }), undefined);
  });

  it('never while nobody reports lost data, or only a stale or own report does', () => {
    assert.equal(rejoinRecovery({ ...base, heartbeats: [beat('m1', { waiting: { dataLost: false } })] }), undefined);
    assert.equal(rejoinRecovery({ ...base, heartbeats: [beat('m1', { waiting: { dataLost: true }, ageMs: 30_001 })] }), undefined);
    assert.equal(rejoinRecovery({ ...base, heartbeats: [beat('m3', { waiting: { dataLost: true } })] }), undefined);
  });

  it('never while an initialization runs, etcd is down, or the cluster has quorum', () => {
    assert.equal(rejoinRecovery({ ...base, idle: false }), undefined);
    assert.equal(rejoinRecovery({ ...base, etcdUp: false }), undefined);
    assert.equal(rejoinRecovery({ ...base, noQuorumSinceMs: undefined }), undefined);
  });
});
