import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide, findSelf, type InitFacts, type LocalData, type MemberRecord, type RunningCluster } from '../../src/initializer/decide.js';

const NAMES = ['m1', 'm2', 'm3'] as const;
const peerURL = (name: string): string => `http://${name}:2380`;
const RUNS = { numRuns: 20_000 };

// --- generators over the whole input space, with small value sets so collisions (same cluster,
// same member, equal raft indexes) happen often ---
const clusterId = fc.constantFrom('c1', 'c2');
const memberId = fc.constantFrom('a1', 'a2', 'a3', 'b1');
const index = fc.integer({ min: 0, max: 6 });

const local: fc.Arbitrary<LocalData> = fc.oneof(
  fc.constant<LocalData>({ state: 'missing' }),
  fc.constant<LocalData>({ state: 'empty' }),
  fc.constant<LocalData>({ state: 'corrupt', reason: 'bad crc' }),
  fc.record({ state: fc.constant('valid' as const), memberId, clusterId, raftIndex: index, revision: index, consistentIndex: index }),
);

const record = (name: string): fc.Arbitrary<MemberRecord> =>
  fc.oneof(
    fc.record({ name: fc.constant(name), memberId, clusterId, raftIndex: index, etcdUp: fc.boolean(), awaitingRestore: fc.boolean(), live: fc.boolean() }),
    // A sidecar whose etcd never answered: no identity yet.
    fc.record({ name: fc.constant(name), etcdUp: fc.constant(false), awaitingRestore: fc.boolean(), live: fc.boolean() }),
  );

const world = fc
  .record({
    size: fc.integer({ min: 1, max: 3 }),
    selfIndex: fc.nat(2),
    restoreLeaderIndex: fc.nat(2),
    local,
    cluster: fc.option(
      fc.record({
        clusterId,
        hasQuorum: fc.boolean(),
        members: fc.uniqueArray(
          fc.record({ id: memberId, nameIndex: fc.nat(3), learner: fc.boolean(), started: fc.boolean() }),
          { selector: (m) => m.nameIndex, maxLength: 4 },
        ),
      }),
      { nil: undefined },
    ),
    heartbeats: fc.tuple(fc.option(record('m1')), fc.option(record('m2')), fc.option(record('m3'))),
    chain: fc.option(fc.record({ clusterId: fc.option(clusterId, { nil: undefined }), lastRevision: index }), { nil: undefined }),
    anySnapshot: fc.boolean(),
    graceOver: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map((w): InitFacts => {
    const names = NAMES.slice(0, w.size);
    const self = names[w.selfIndex % w.size] as string;
    const cluster: RunningCluster | undefined = w.cluster && {
      clusterId: w.cluster.clusterId,
      hasQuorum: w.cluster.hasQuorum,
      // nameIndex 3 is a member that is not configured here (added by hand, or another scale).
      members: w.cluster.members.map((m) => {
        const name = m.nameIndex < 3 ? (NAMES[m.nameIndex] as string) : 'x9';
        return { id: m.id, name: m.started ? name : '', peerURLs: [peerURL(name)], learner: m.learner, started: m.started };
      }),
    };
    return {
      self: { name: self, peerURLs: [peerURL(self)] },
      initialCluster: names.map((n) => ({ name: n, peerURL: peerURL(n) })),
      restoreLeader: names[w.restoreLeaderIndex % w.size] as string,
      local: w.local,
      ...(cluster ? { cluster } : {}),
      heartbeats: w.heartbeats.filter((h): h is MemberRecord => h !== null && names.includes(h.name as (typeof names)[number])),
      backups: { ...(w.chain ? { chain: w.chain } : {}), anySnapshot: w.anySnapshot || w.chain !== undefined },
      ...(w.graceOver !== undefined ? { graceOver: w.graceOver } : {}),
    };
  });

const otherPeerUp = (f: InitFacts): boolean => f.heartbeats.some((h) => h.name !== f.self.name && h.live && h.etcdUp);
const timeTravelled = (f: InitFacts): boolean => {
  const own = f.heartbeats.find((h) => h.name === f.self.name);
  return !!own && own.clusterId === f.local.clusterId && own.memberId === f.local.memberId && (own.raftIndex ?? 0) > (f.local.raftIndex ?? 0);
};

describe('decide(): invariants over the whole input space (DESIGN.md section 6)', () => {
  it('is total: one known decision and a reason for every input', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        assert.ok(['use-existing', 'join-existing', 'join-as-learner', 'replace', 'restore', 'wait', 'bootstrap'].includes(v.decision));
        assert.ok(v.reason.length > 10);
      }),
      RUNS,
    );
  });

  it('never restores, bootstraps or forces a new cluster while a cluster answers or another member reports its etcd up (no split brain, seed 003)', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (v.decision === 'restore' || v.decision === 'bootstrap' || v.forceNewCluster) {
          assert.equal(f.cluster, undefined);
          assert.equal(otherPeerUp(f), false);
        }
      }),
      RUNS,
    );
  });

  it('never bootstraps empty when backups, heartbeats or data show the cluster existed (no silent data loss)', () => {
    fc.assert(
      fc.property(world, (f) => {
        if (decide(f).decision !== 'bootstrap') return;
        assert.equal(f.backups.anySnapshot, false);
        assert.equal(f.heartbeats.filter((h) => h.clusterId !== undefined).length, 0);
        assert.ok(f.local.state === 'missing' || f.local.state === 'empty');
      }),
      RUNS,
    );
  });

  it('never wipes valid data that belongs to the running cluster (and did not go back in time)', () => {
    fc.assert(
      fc.property(world, (f) => {
        const me = f.cluster && findSelf(f.cluster, f.self);
        const ours = f.cluster && me && f.local.state === 'valid' && f.local.clusterId === f.cluster.clusterId && f.local.memberId === me.id && !timeTravelled(f);
        if (ours) assert.equal(decide(f).decision, 'use-existing');
      }),
      RUNS,
    );
  });

  it('never starts data that went back in time (seed 004)', () => {
    fc.assert(
      fc.property(world, (f) => {
        if (f.local.state === 'valid' && timeTravelled(f)) assert.notEqual(decide(f).decision, 'use-existing');
      }),
      RUNS,
    );
  });

  it('at most one member of a cluster restores: the same world seen from every member', () => {
    fc.assert(
      fc.property(world, fc.tuple(local, local, local), (f, locals) => {
        const restorers = f.initialCluster.filter((m, i) => {
          const v = decide({ ...f, self: { name: m.name, peerURLs: [m.peerURL] }, local: locals[i] as LocalData });
          return v.decision === 'restore' || v.forceNewCluster;
        });
        assert.ok(restorers.length <= 1, restorers.map((m) => m.name).join(','));
        if (f.initialCluster.length > 1) for (const r of restorers) assert.equal(r.name, f.restoreLeader);
      }),
      RUNS,
    );
  });

  it('a multi-member restore happens only when every other member reports it lost its data', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (f.initialCluster.length < 2 || !(v.decision === 'restore' || v.forceNewCluster)) return;
        for (const m of f.initialCluster.filter((x) => x.name !== f.self.name)) {
          assert.ok(f.heartbeats.some((h) => h.name === m.name && h.live && h.awaitingRestore && !h.etcdUp), m.name);
        }
      }),
      RUNS,
    );
  });

  it('membership changes (replace, join as learner) only with quorum; replace removes this member and only this member', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (v.decision === 'replace' || v.decision === 'join-as-learner') assert.equal(f.cluster?.hasQuorum, true);
        if (v.decision === 'replace') assert.equal(v.removeMemberId, f.cluster && findSelf(f.cluster, f.self)?.id);
        if (v.decision === 'join-as-learner') assert.equal(f.cluster && findSelf(f.cluster, f.self), undefined);
      }),
      RUNS,
    );
  });
});

// --- the scenarios of the seeds and the issue, by name ---
const three = (self: string, over: Partial<InitFacts> = {}): InitFacts => ({
  self: { name: self, peerURLs: [peerURL(self)] },
  initialCluster: NAMES.map((n) => ({ name: n, peerURL: peerURL(n) })),
  restoreLeader: 'm1',
  local: { state: 'empty' },
  heartbeats: [],
  backups: { anySnapshot: false },
  ...over,
});
const running = (members: RunningCluster['members'], hasQuorum = true): RunningCluster => ({ clusterId: 'c1', hasQuorum, members });
const started = (name: string, id: string): RunningCluster['members'][number] => ({ id, name, peerURLs: [peerURL(name)], learner: false, started: true });
const hb = (name: string, over: Partial<MemberRecord> = {}): MemberRecord => ({ name, memberId: 'a1', clusterId: 'c1', raftIndex: 10, etcdUp: true, awaitingRestore: false, live: true, ...over });
const valid = (over: Partial<LocalData> = {}): LocalData => ({ state: 'valid', memberId: 'a1', clusterId: 'c1', raftIndex: 10, revision: 5, consistentIndex: 10, ...over });

describe('decide(): the scenarios of the seeds', () => {
  const cases: [string, InitFacts, string][] = [
    ['first member of a fresh cluster: nothing anywhere', three('m1'), 'bootstrap'],
    ['a fresh cluster whose sidecars already beat (no etcd answered them yet)', three('m2', { heartbeats: [{ name: 'm1', etcdUp: false, awaitingRestore: false, live: true }, { name: 'm2', etcdUp: false, awaitingRestore: false, live: true }] }), 'bootstrap'],
    [
      'seed 003: the late third member sees a full snapshot and the two others running: it joins, never restores',
      three('m3', { cluster: running([started('m1', 'a1'), started('m2', 'a2'), { id: 'a3', name: '', peerURLs: [peerURL('m3')], learner: false, started: false }]), backups: { chain: { clusterId: 'c1', lastRevision: 1 }, anySnapshot: true }, heartbeats: [hb('m1'), hb('m2')] }),
      'join-existing',
    ],
    [
      'seed 003, earlier: backups exist, no endpoint answers yet, but a peer reports its etcd up: wait, never restore',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 1 }, anySnapshot: true }, heartbeats: [hb('m2')] }),
      'wait',
    ],
    [
      'seed 004: the data dir replaced by an older copy of itself, cluster running: replace',
      three('m1', { local: valid({ raftIndex: 7, consistentIndex: 7 }), cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')]), heartbeats: [hb('m1', { raftIndex: 40 })] }),
      'replace',
    ],
    ['a member whose data dir was wiped, cluster running: replace', three('m2', { cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')]) }), 'replace'],
    ['a member whose data belongs to another cluster: replace, never join with it', three('m1', { local: valid({ clusterId: 'c9' }), cluster: running([started('m1', 'a1'), started('m2', 'a2')]) }), 'replace'],
    ['a restart of a healthy member', three('m1', { local: valid(), cluster: running([started('m1', 'a1'), started('m2', 'a2')]) }), 'use-existing'],
    ['every member restarts at once with its data (full restart)', three('m2', { local: valid({ memberId: 'a2' }), backups: { chain: { clusterId: 'c1', lastRevision: 9 }, anySnapshot: true } }), 'use-existing'],
    ['scale-up 3 -> 4: the new member is not listed', { ...three('m1'), self: { name: 'm4', peerURLs: [peerURL('m4')] }, cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')]) }, 'join-as-learner'],
    [
      'single member, data dir lost: restore',
      { ...three('m1'), initialCluster: [{ name: 'm1', peerURL: peerURL('m1') }], backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [hb('m1', { etcdUp: false, live: false })] },
      'restore',
    ],
    [
      'quorum loss, every data dir lost: the designated restorer waits until the others say they lost theirs',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [hb('m2', { etcdUp: false, awaitingRestore: true })] }),
      'wait',
    ],
    [
      'quorum loss, every data dir lost, both others wait: the designated restorer restores',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [hb('m2', { etcdUp: false, awaitingRestore: true }), hb('m3', { etcdUp: false, awaitingRestore: true })] }),
      'restore',
    ],
    [
      'the designated restorer with its data, no cluster, the others not heard from yet: it waits to hear whether they lost theirs',
      three('m1', { local: valid(), graceOver: false, heartbeats: [hb('m2', { etcdUp: false }), hb('m3', { etcdUp: false, awaitingRestore: true })] }),
      'wait',
    ],
    [
      'the same once the grace is over: a plain restart of the cluster',
      three('m1', { local: valid(), graceOver: true, heartbeats: [hb('m2', { etcdUp: false }), hb('m3', { etcdUp: false, awaitingRestore: true })] }),
      'use-existing',
    ],
    ['quorum loss: a member that is not the restorer waits', three('m2', { backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true } }), 'wait'],
    ['after the restore: the restored one-member cluster runs, the others join it as learners', three('m2', { cluster: running([started('m1', 'f1')]) }), 'join-as-learner'],
    ['snapshots exist but no restorable chain: never bootstrap empty', three('m1', { backups: { anySnapshot: true } }), 'wait'],
  ];
  for (const [name, facts, expected] of cases) {
    it(name, () => {
      const v = decide(facts);
      assert.equal(v.decision, expected, v.reason);
    });
  }
});
