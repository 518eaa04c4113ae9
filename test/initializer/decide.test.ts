import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide, findSelf, waitingReport as reportOf, type InitFacts, type LocalData, type MemberRecord, type RunningCluster, type WaitingReport } from '../../src/initializer/decide.js';

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

const waitingReport = fc.oneof(fc.constant<WaitingReport>({ dataLost: true }), fc.record({ dataLost: fc.constant(false), clusterId, memberId, raftIndex: index, revisionBound: index }));

const record = (name: string): fc.Arbitrary<MemberRecord> =>
  fc.oneof(
    fc.record({ name: fc.constant(name), memberId, clusterId, raftIndex: index, etcdUp: fc.boolean(), inQuorum: fc.boolean(), live: fc.boolean() }, { requiredKeys: ['name', 'etcdUp', 'live'] }),
    // A sidecar whose etcd never answered: no identity yet.
    fc.record({ name: fc.constant(name), etcdUp: fc.constant(false), live: fc.boolean() }),
    // A member whose initializer waits without a cluster with quorum, with what it says it holds.
    fc.record({ name: fc.constant(name), etcdUp: fc.constant(false), live: fc.boolean(), waiting: waitingReport }),
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
        members: fc.uniqueArray(fc.record({ id: memberId, nameIndex: fc.nat(3), learner: fc.boolean(), started: fc.boolean() }), { selector: (m) => m.nameIndex, maxLength: 4 }),
      }),
      { nil: undefined },
    ),
    heartbeats: fc.tuple(fc.option(record('m1')), fc.option(record('m2')), fc.option(record('m3'))),
    chain: fc.option(fc.record({ clusterId: fc.option(clusterId, { nil: undefined }), lastRevision: index }), { nil: undefined }),
    anySnapshot: fc.boolean(),
    graceOver: fc.option(fc.boolean(), { nil: undefined }),
    claim: fc.option(
      fc.record({
        epoch: fc.integer({ min: 1, max: 3 }),
        holderIndex: fc.nat(2),
        source: fc.constantFrom('backups' as const, 'local-copy' as const),
        state: fc.constantFrom('claimed' as const, 'done' as const),
      }),
      { nil: undefined },
    ),
    storeError: fc.option(fc.constant('connect ECONNREFUSED'), { nil: undefined, freq: 8 }),
    maxLearners: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined }),
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
      ...(w.claim ? { recovery: { claim: { epoch: w.claim.epoch, holder: names[w.claim.holderIndex % w.size] as string, source: w.claim.source, state: w.claim.state } } } : {}),
      ...(w.storeError ? { storeError: w.storeError } : {}),
      ...(w.maxLearners !== undefined ? { maxLearners: w.maxLearners } : {}),
    };
  });

const otherPeerUp = (f: InitFacts): boolean => f.heartbeats.some((h) => h.name !== f.self.name && h.live && h.etcdUp && h.waiting === undefined);
const timeTravelled = (f: InitFacts): boolean => {
  const own = f.heartbeats.find((h) => h.name === f.self.name);
  return !!own && own.clusterId === f.local.clusterId && own.memberId === f.local.memberId && (own.raftIndex ?? 0) > (f.local.raftIndex ?? 0);
};

describe('decide(): invariants over the whole input space', () => {
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

  it('never restores or bootstraps while a cluster answers, another member reports its etcd up, or the store is unknown (no split brain, seed 003)', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (v.decision === 'restore' || v.decision === 'bootstrap') {
          assert.equal(f.cluster, undefined);
          assert.equal(otherPeerUp(f), false);
          assert.equal(f.storeError, undefined);
        }
      }),
      RUNS,
    );
  });

  it('a store outage changes nothing for a member with valid data listed in a running cluster with quorum', () => {
    fc.assert(
      fc.property(world, (f) => {
        const withStore = decide({ ...f, storeError: undefined });
        const without = decide({ ...f, storeError: 'connect ECONNREFUSED', heartbeats: [], backups: { anySnapshot: false } });
        if (f.cluster?.hasQuorum && f.local.state === 'valid' && withStore.decision === 'use-existing') assert.equal(without.decision, 'use-existing');
      }),
      RUNS,
    );
  });

  it('a multi-member recovery names an epoch past any claim in the store, or resumes its own claim', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (v.decision !== 'restore' || f.initialCluster.length < 2) return;
        assert.ok(v.recovery, v.reason);
        const claim = f.recovery?.claim;
        if (!claim) return;
        if (claim.holder === f.self.name && claim.state === 'claimed') assert.equal(v.recovery.epoch, claim.epoch);
        else assert.equal(v.recovery.epoch, claim.epoch + 1);
      }),
      RUNS,
    );
  });

  it('never bootstraps empty when backups, heartbeats or data show the cluster existed (no silent data loss)', () => {
    fc.assert(
      fc.property(world, (f) => {
        if (decide(f).decision !== 'bootstrap') return;
        assert.equal(f.backups.anySnapshot, false);
        assert.equal(f.recovery?.claim, undefined);
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

  it('at most one member recovers, and from the newest copy: every member waiting, each heartbeat saying what its data holds', () => {
    fc.assert(
      fc.property(world, fc.tuple(local, local, local), (f0, locals) => {
        if (f0.initialCluster.length < 2) return;
        // No cluster answers, every member's sidecar is live and its heartbeat carries the report its
        // own initializer makes of its own data: the world every member sees alike.
        const base: InitFacts = { ...f0, heartbeats: [] };
        delete base.cluster;
        delete base.storeError;
        const viewOf = (i: number): InitFacts => {
          const m = base.initialCluster[i] as { name: string; peerURL: string };
          return { ...base, self: { name: m.name, peerURLs: [m.peerURL] }, local: locals[i] as LocalData };
        };
        const heartbeats: MemberRecord[] = base.initialCluster.map((m, i) => ({ name: m.name, etcdUp: false, live: true, waiting: reportOf(viewOf(i)) }));
        const verdicts = base.initialCluster.map((_, i) => decide({ ...viewOf(i), heartbeats }));
        const restorers = verdicts.map((v, i) => (v.decision === 'restore' ? i : -1)).filter((i) => i >= 0);
        assert.ok(restorers.length <= 1, verdicts.map((v) => v.reason).join(' | '));
        const r = restorers[0];
        if (r === undefined) return;
        const chosen = verdicts[r]?.recovery;
        assert.ok(chosen);
        const clusterOf = heartbeats[r]?.waiting?.clusterId;
        const copies = heartbeats.filter((h) => h.waiting && !h.waiting.dataLost && h.waiting.raftIndex !== undefined && (clusterOf === undefined || h.waiting.clusterId === clusterOf));
        const newest = Math.max(-1, ...copies.map((h) => h.waiting?.raftIndex ?? -1));
        // A holder resuming its own claim repeats its restore whatever the others hold (its data may
        // already be the recovered cluster's, whose raft log starts anew).
        const resumes = base.recovery?.claim?.state === 'claimed' && base.recovery.claim.holder === base.initialCluster[r]?.name;
        if (chosen.source === 'backups') assert.ok(base.backups.chain, 'recovered from backups that do not exist');
        else if (!resumes) assert.equal(heartbeats[r]?.waiting?.raftIndex, newest, 'a copy with fewer raft entries than another was chosen');
      }),
      RUNS,
    );
  });

  it('a multi-member recovery happens only with a majority taking part, and only after hearing from every member or waiting --heartbeat-ttl', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (f.initialCluster.length < 2 || v.decision !== 'restore') return;
        const taking = f.initialCluster.filter((m) => m.name === f.self.name || f.heartbeats.some((h) => h.name === m.name && h.live && h.waiting !== undefined));
        assert.ok(taking.length > f.initialCluster.length / 2, v.reason);
        if (f.graceOver === false) assert.equal(taking.length, f.initialCluster.length, v.reason);
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

  it('never adds a learner beyond --max-learners (default 1): a member that would be one more waits', () => {
    fc.assert(
      fc.property(world, (f) => {
        const v = decide(f);
        if (v.decision !== 'join-as-learner' && v.decision !== 'replace') return;
        const me = f.cluster && findSelf(f.cluster, f.self);
        const others = f.cluster?.members.filter((m) => m.learner && m !== me).length ?? 0;
        assert.ok(others < (f.maxLearners ?? 1), `${others} other learners, max ${f.maxLearners ?? 1}: ${v.decision}`);
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
const hb = (name: string, over: Partial<MemberRecord> = {}): MemberRecord => ({ name, memberId: 'a1', clusterId: 'c1', raftIndex: 10, etcdUp: true, inQuorum: true, live: true, ...over });
const lost = (name: string): MemberRecord => ({ name, etcdUp: false, live: true, waiting: { dataLost: true } });
const holds = (name: string, raftIndex: number, revisionBound: number): MemberRecord => ({
  name,
  etcdUp: false,
  live: true,
  waiting: { dataLost: false, clusterId: 'c1', memberId: `a${name.slice(1)}`, raftIndex, revisionBound },
});
const valid = (over: Partial<LocalData> = {}): LocalData => ({ state: 'valid', memberId: 'a1', clusterId: 'c1', raftIndex: 10, revision: 5, consistentIndex: 10, ...over });

describe('decide(): the scenarios of the seeds', () => {
  const cases: [string, InitFacts, string][] = [
    ['first member of a fresh cluster: nothing anywhere', three('m1'), 'bootstrap'],
    [
      'a fresh cluster whose sidecars already beat (no etcd answered them yet)',
      three('m2', {
        heartbeats: [
          { name: 'm1', etcdUp: false, live: true },
          { name: 'm2', etcdUp: false, live: true },
        ],
      }),
      'bootstrap',
    ],
    [
      'seed 003: the late third member sees a full snapshot and the two others running: it joins, never restores',
      three('m3', {
        cluster: running([started('m1', 'a1'), started('m2', 'a2'), { id: 'a3', name: '', peerURLs: [peerURL('m3')], learner: false, started: false }]),
        backups: { chain: { clusterId: 'c1', lastRevision: 1 }, anySnapshot: true },
        heartbeats: [hb('m1'), hb('m2')],
      }),
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
    [
      'a member whose data belongs to another cluster: replace, never join with it',
      three('m1', { local: valid({ clusterId: 'c9' }), cluster: running([started('m1', 'a1'), started('m2', 'a2')]) }),
      'replace',
    ],
    ['a restart of a healthy member', three('m1', { local: valid(), cluster: running([started('m1', 'a1'), started('m2', 'a2')]) }), 'use-existing'],
    [
      'every member restarts at once with its data (full restart): a majority reported, it starts',
      three('m2', { local: valid({ memberId: 'a2' }), backups: { chain: { clusterId: 'c1', lastRevision: 9 }, anySnapshot: true }, heartbeats: [holds('m1', 10, 5)] }),
      'use-existing',
    ],
    [
      'a member alone with its data after --heartbeat-ttl: it waits for a majority (an etcd without quorum serves nothing and would keep its copy out of a recovery)',
      three('m2', { local: valid({ memberId: 'a2' }), graceOver: true }),
      'wait',
    ],
    [
      'scale-up 3 -> 4: the new member is not listed',
      { ...three('m1'), self: { name: 'm4', peerURLs: [peerURL('m4')] }, cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')]) },
      'join-as-learner',
    ],
    [
      'scale-up 3 -> 5: a learner still catching up fills the one place; the next member waits',
      { ...three('m1'), self: { name: 'm5', peerURLs: [peerURL('m5')] }, cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3'), { ...started('m4', 'a4'), learner: true }]) },
      'wait',
    ],
    [
      'scale-up 3 -> 5 with --max-learners 2 (etcd 3.6): the second learner is added',
      {
        ...three('m1'),
        maxLearners: 2,
        self: { name: 'm5', peerURLs: [peerURL('m5')] },
        cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3'), { ...started('m4', 'a4'), learner: true }]),
      },
      'join-as-learner',
    ],
    [
      'a wiped member while another learner catches up: waits before it is removed (it could not be added back)',
      three('m2', { cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3'), { ...started('x9', 'b1'), learner: true }]) }),
      'wait',
    ],
    [
      'a wiped member that is itself the learner: replace (removing it frees the place)',
      three('m2', { cluster: running([started('m1', 'a1'), { ...started('m2', 'a2'), learner: true }, started('m3', 'a3')]) }),
      'replace',
    ],
    [
      'single member, data dir lost: restore',
      {
        ...three('m1'),
        initialCluster: [{ name: 'm1', peerURL: peerURL('m1') }],
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [hb('m1', { etcdUp: false, live: false })],
      },
      'restore',
    ],
    [
      'quorum loss, every data dir lost: the preferred restorer waits until a member not heard from reports (before --heartbeat-ttl)',
      three('m1', { graceOver: false, backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [lost('m2')] }),
      'wait',
    ],
    [
      'quorum loss, every data dir lost, both others wait: the preferred restorer restores from the backups',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [lost('m2'), lost('m3')] }),
      'restore',
    ],
    [
      'quorum loss, every data dir lost, the preferred restorer gone for good: after --heartbeat-ttl the first of a majority restores',
      three('m2', { graceOver: true, backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [lost('m3')] }),
      'restore',
    ],
    [
      'the preferred restorer with its data, no cluster, the others not heard from yet: it waits to hear whether they lost theirs',
      three('m1', { local: valid(), graceOver: false, heartbeats: [hb('m2', { etcdUp: false, inQuorum: false }), lost('m3')] }),
      'wait',
    ],
    ['a plain restart: every member heard from kept its data', three('m1', { local: valid(), graceOver: true, heartbeats: [holds('m2', 10, 5), holds('m3', 10, 5)] }), 'use-existing'],
    [
      'two of three kept their data, one wiped, nobody running: the two start the cluster again (no recovery, no new cluster ID)',
      three('m3', {
        local: valid({ memberId: 'a3', raftIndex: 50, consistentIndex: 50, revision: 40 }),
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [lost('m1'), holds('m2', 49, 39)],
      }),
      'use-existing',
    ],
    [
      'quorum loss with one survivor (m3, its etcd stopped): the survivor recovers from its own copy',
      three('m3', {
        local: valid({ memberId: 'a3', raftIndex: 50, consistentIndex: 48, revision: 40 }),
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [lost('m1'), lost('m2')],
      }),
      'restore',
    ],
    [
      'quorum loss with one survivor: the preferred restorer, wiped, waits for it',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true }, heartbeats: [lost('m2'), holds('m3', 50, 42)] }),
      'wait',
    ],
    [
      'quorum loss with one survivor whose copy the backups pass: the preferred restorer restores from the backups',
      three('m1', { backups: { chain: { clusterId: 'c1', lastRevision: 60 }, anySnapshot: true }, heartbeats: [lost('m2'), holds('m3', 50, 42)] }),
      'restore',
    ],
    [
      'two survivors of five: the one with more raft entries recovers',
      {
        ...three('m2', { local: valid({ memberId: 'a2', raftIndex: 70, revision: 60, consistentIndex: 70 }), heartbeats: [lost('m1'), holds('m3', 65, 55), lost('m4'), lost('m5')] }),
        initialCluster: ['m1', 'm2', 'm3', 'm4', 'm5'].map((n) => ({ name: n, peerURL: peerURL(n) })),
      },
      'restore',
    ],
    [
      'a survivor whose etcd still runs without quorum (its sidecar has not joined the recovery): the others wait, never start a second cluster',
      three('m1', {
        cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')], false),
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [lost('m2'), hb('m3', { inQuorum: false })],
      }),
      'wait',
    ],
    [
      'the recovery claimed by a live holder busy restoring: wait for it',
      three('m2', {
        recovery: { claim: { epoch: 2, holder: 'm1', source: 'backups', state: 'claimed' } },
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [hb('m1', { etcdUp: false, inQuorum: false }), lost('m3')],
      }),
      'wait',
    ],
    [
      'a holder that restarted mid-recovery resumes its own epoch',
      three('m1', {
        recovery: { claim: { epoch: 2, holder: 'm1', source: 'backups', state: 'claimed' } },
        backups: { chain: { clusterId: 'c1', lastRevision: 30 }, anySnapshot: true },
        heartbeats: [lost('m2'), lost('m3')],
      }),
      'restore',
    ],
    ['the store unreachable, no cluster with quorum: wait (nothing proves a start safe)', three('m1', { local: valid(), storeError: 'connect ECONNREFUSED' }), 'wait'],
    [
      'the store unreachable, valid data listed in a running cluster with quorum: start it',
      three('m1', { local: valid(), storeError: 'connect ECONNREFUSED', cluster: running([started('m1', 'a1'), started('m2', 'a2'), started('m3', 'a3')]) }),
      'use-existing',
    ],
    [
      'single member, valid data, backups with a gap after it: use the data (the contiguous part ends before it)',
      {
        ...three('m1', {
          local: valid({ raftIndex: 30, consistentIndex: 30, revision: 25 }),
          backups: { chain: { clusterId: 'c1', lastRevision: 20, gaps: [{ from: 21, to: 22 }] }, anySnapshot: true },
        }),
        initialCluster: [{ name: 'm1', peerURL: peerURL('m1') }],
      },
      'use-existing',
    ],
    [
      'single member, WAL entries beyond the db reach the backups: use the data (revision bound, not the db revision)',
      {
        ...three('m1', { local: valid({ raftIndex: 40, consistentIndex: 30, revision: 25 }), backups: { chain: { clusterId: 'c1', lastRevision: 33 }, anySnapshot: true } }),
        initialCluster: [{ name: 'm1', peerURL: peerURL('m1') }],
      },
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
