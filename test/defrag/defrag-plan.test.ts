import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compactionTarget, membersOutOfSpace } from '../../src/defrag/nospace.js';
import { alarmType } from '../../src/etcd/alarms.js';
import { nextTarget, planDefrag, quorumWithOneBusy } from '../../src/defrag/plan.js';
import type { ClusterStatus, MemberHealth } from '../../src/etcd/status.js';

function member(name: string, o: { leader?: boolean; learner?: boolean; healthy?: boolean; dbSize?: number; inUse?: number; alarms?: string[] } = {}): MemberHealth {
  const dbSize = o.dbSize ?? 100_000_000;
  return {
    id: `id-${name}`,
    name,
    peerURLs: [`http://${name}:2380`],
    clientURLs: [`http://${name}:2379`],
    isLearner: o.learner ?? false,
    started: true,
    isLeader: o.leader ?? false,
    healthy: o.healthy ?? (o.alarms ?? []).length === 0,
    status: { endpoint: `http://${name}:2379`, reachable: true, latencyMs: 1, leaderId: 'id-m1', dbSize, dbSizeInUse: o.inUse ?? dbSize / 2, alarms: o.alarms ?? [] },
  };
}

function cluster(members: MemberHealth[]): ClusterStatus {
  const voters = members.filter((m) => !m.isLearner);
  const healthyVoters = voters.filter((m) => m.healthy).length;
  return { members, voters: voters.length, healthyVoters, hasQuorum: healthyVoters > voters.length / 2, alarms: [], checkedAt: new Date(0).toISOString(), durationMs: 1 };
}

describe('defragmentation plan', () => {
  it('followers one at a time by name, the raft leader last', () => {
    const plan = planDefrag(cluster([member('m2', { leader: true }), member('m3'), member('m1')]), { thresholdPercent: 10 });
    assert.ok(plan.go);
    assert.deepEqual(
      plan.order.map((t) => t.name),
      ['m1', 'm3', 'm2'],
    );
  });

  it('takes the member leading now last among those left, when leadership moved during the round', () => {
    // The round began with m1 leading (order m2, m3, m1); m2 is done; now m3 leads.
    const remaining = new Set(['m3', 'm1']);
    const plan = planDefrag(cluster([member('m1'), member('m2'), member('m3', { leader: true })]), { thresholdPercent: 10 });
    assert.ok(plan.go);
    assert.equal(nextTarget(plan, remaining)?.name, 'm1');
    remaining.delete('m1');
    assert.equal(nextTarget(plan, remaining)?.name, 'm3');
    assert.equal(nextTarget(plan, new Set()), undefined);
  });

  it('skips a member with less free space than the threshold, saying how much it has', () => {
    const plan = planDefrag(cluster([member('m1', { leader: true }), member('m2', { dbSize: 1000, inUse: 950 }), member('m3')]), { thresholdPercent: 10 });
    assert.ok(plan.go);
    assert.deepEqual(
      plan.order.map((t) => t.name),
      ['m3', 'm1'],
    );
    assert.match(plan.skipped[0]?.reason ?? '', /5\.0% of its 1000-byte db is free, below --defrag-threshold 10%/);
  });

  it('refuses while a member is unhealthy, without quorum, or with a single voter', () => {
    const down = planDefrag(cluster([member('m1', { leader: true }), member('m2', { healthy: false }), member('m3')]), { thresholdPercent: 0 });
    assert.deepEqual(down.go, false);
    assert.match(!down.go ? down.reason : '', /not every member is healthy \(m2/);
    const lone = planDefrag(cluster([member('m1', { leader: true })]), { thresholdPercent: 0 });
    assert.match(!lone.go ? lone.reason : '', /cannot keep a quorum while one is busy/);
    const noQuorum = planDefrag({ ...cluster([member('m1'), member('m2'), member('m3')]), hasQuorum: false }, { thresholdPercent: 0 });
    assert.match(!noQuorum.go ? noQuorum.reason : '', /no quorum/);
  });

  it('runs despite NOSPACE when told to (defragmentation is its cure), never despite another alarm', () => {
    const nospace = 'memberID:12345 alarm:NOSPACE ';
    assert.equal(alarmType(nospace), 'NOSPACE');
    const members = [member('m1', { leader: true, alarms: [nospace] }), member('m2', { alarms: [nospace] }), member('m3', { alarms: [nospace] })];
    assert.equal(planDefrag(cluster(members), { thresholdPercent: 0 }).go, false);
    assert.equal(planDefrag(cluster(members), { thresholdPercent: 0, tolerateAlarm: 'NOSPACE' }).go, true);
    const corrupt = [...members.slice(0, 2), member('m3', { alarms: ['memberID:1 alarm:CORRUPT '] })];
    assert.equal(planDefrag(cluster(corrupt), { thresholdPercent: 0, tolerateAlarm: 'NOSPACE' }).go, false);
  });

  it('one member by name, or a clear refusal for a name the cluster does not have', () => {
    const c = cluster([member('m1', { leader: true }), member('m2'), member('m3')]);
    const one = planDefrag(c, { thresholdPercent: 0, only: 'm1' });
    assert.deepEqual(one.go && one.order.map((t) => t.name), ['m1']);
    assert.match(
      (() => {
        const p = planDefrag(c, { thresholdPercent: 0, only: 'm9' });
        return p.go ? '' : p.reason;
      })(),
      /no member named "m9"/,
    );
  });

  it('property: a plan that goes keeps the quorum with one member busy, puts the leader last and names every member once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.integer({ min: 0, max: 100 }), { minLength: 7, maxLength: 7 }),
        fc.integer({ min: 0, max: 100 }),
        (n, leaderAt, freePercents, threshold) => {
          const members = Array.from({ length: n }, (_, i) => member(`m${i + 1}`, { leader: i === leaderAt % n, dbSize: 1000, inUse: 1000 - 10 * (freePercents[i] ?? 0) }));
          const plan = planDefrag(cluster(members), { thresholdPercent: threshold });
          if (!plan.go) return !quorumWithOneBusy(n, n);
          const names = [...plan.order.map((t) => t.name), ...plan.skipped.map((s) => s.name)];
          const leaderIndex = plan.order.findIndex((t) => t.isLeader);
          return quorumWithOneBusy(n, n) && new Set(names).size === n && (leaderIndex === -1 || leaderIndex === plan.order.length - 1);
        },
      ),
      { seed: 20261204, numRuns: 500 },
    );
  });
});

describe('NOSPACE recovery facts', () => {
  it('names the members out of space and compacts to the newest revision minus the window, never below 1', () => {
    // Every member reports every member's alarms; an alarm belongs to the member it names (11 = 0xb).
    const alarms = ['memberID:11 alarm:NOSPACE ', 'memberID:12 alarm:CORRUPT '];
    const members = [member('m1', { leader: true, alarms }), member('m2', { alarms }), member('m3', { alarms })];
    (members[0] as { id: string }).id = 'b';
    (members[2] as { id: string }).id = 'c';
    for (const [i, m] of members.entries()) if (m.status) m.status.revision = 100 + i;
    const status = cluster(members);
    assert.deepEqual(membersOutOfSpace(status), ['m1']);
    assert.equal(compactionTarget(status, 10), 92);
    assert.equal(compactionTarget(status, 102), undefined);
  });
});
