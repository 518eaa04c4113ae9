import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide, waitingReport, type InitFacts, type LocalData, type MemberRecord, type RecoveryClaim, type RunningCluster, type Verdict } from '../../src/initializer/decide.js';

// A model of the whole recovery protocol after quorum loss, not only of decide(): members whose
// initializers gather facts, decide and act in separate steps (so other members interleave between
// a decision, its confirmation, the conditional write of the claim and the restore), a store with
// heartbeats and the claim, and the clusters their etcds form. decide() and waitingReport() are the
// product's own; the model plays the I/O: what each step reads and what it changes.
//
// Safety, checked after every step of every schedule: never two clusters with quorum; never two
// recoveries; the recovery starts from the newest copy held by any member that had started when the
// holder confirmed its decision, or from backups that reach further; no bootstrap of a cluster that
// existed. (A member silent until after that moment is, for the protocol, gone: waiting for it
// forever is what the preferred-restorer-gone case must not do.) Liveness: once the schedule
// turns fair, every member that starts ends in one cluster with quorum.

const OLD = 'c1';

type Phase = 'down' | 'gone' | 'initializing' | 'confirming' | 'claiming' | 'restoring' | 'running';

interface Copy {
  clusterId: string;
  raftIndex: number;
  revision: number;
}

interface ModelMember {
  name: string;
  phase: Phase;
  data: Copy | undefined;
  /** The cluster its etcd runs in. */
  cluster?: string;
  rounds: number;
  waiting?: MemberRecord['waiting'];
  /** Kept between the steps of an irreversible action. */
  pending?: { verdict: Verdict; claimVersion: number | undefined; newestHeld?: number };
  everStarted: boolean;
}

interface World {
  members: ModelMember[];
  chain: { clusterId: string; lastRevision: number } | undefined;
  claim: { claim: RecoveryClaim; version: number } | undefined;
  /** Membership of every cluster ever formed (the old one included). */
  clusters: Map<string, string[]>;
  recoveries: { epoch: number; holder: string; revision: number; newestHeld: number }[];
  violations: string[];
}

const peer = (n: string): string => `http://${n}:2380`;

function local(m: ModelMember): LocalData {
  if (!m.data) return { state: 'missing' };
  return { state: 'valid', clusterId: m.data.clusterId, memberId: `${m.name}@${m.data.clusterId}`, raftIndex: m.data.raftIndex, revision: m.data.revision, consistentIndex: m.data.raftIndex };
}

/** Runs in its cluster and that cluster has a majority of its members running. */
function hasQuorum(w: World, clusterId: string): boolean {
  const members = w.clusters.get(clusterId) ?? [];
  const up = w.members.filter((m) => m.phase === 'running' && m.cluster === clusterId).length;
  return up > members.length / 2;
}

/**
 * The cluster whose endpoints answer: etcd serves clients only once it has published itself
 * through raft since its start, so a member that started without a quorum answers nothing.
 */
function answering(w: World, self: string): RunningCluster | undefined {
  const ids = [...new Set(w.members.filter((m) => m.phase === 'running' && m.name !== self && m.cluster).map((m) => m.cluster as string))];
  const id = ids.find((c) => hasQuorum(w, c));
  if (!id) return undefined;
  const names = w.clusters.get(id) ?? [];
  return {
    clusterId: id,
    hasQuorum: hasQuorum(w, id),
    members: names.map((n) => ({ id: `${n}@${id}`, name: n, peerURLs: [peer(n)], learner: false, started: true })),
  };
}

function factsOf(w: World, m: ModelMember): InitFacts {
  const heartbeats: MemberRecord[] = w.members
    .filter((o) => o.phase !== 'down' && o.phase !== 'gone')
    .map((o) => {
      const r: MemberRecord = { name: o.name, etcdUp: false, live: true };
      const inQuorum = o.phase === 'running' && !!o.cluster && hasQuorum(w, o.cluster);
      // Its etcd answers its own sidecar only once in a quorum (see answering()).
      r.etcdUp = inQuorum;
      if (o.phase === 'running') r.inQuorum = inQuorum;
      if (o.cluster) r.clusterId = o.cluster;
      // A member that started without a quorum keeps its report until its etcd is in one.
      if (o.waiting && !inQuorum) r.waiting = o.waiting;
      return r;
    });
  const cluster = answering(w, m.name);
  const f: InitFacts = {
    self: { name: m.name, peerURLs: [peer(m.name)] },
    initialCluster: w.members.map((o) => ({ name: o.name, peerURL: peer(o.name) })),
    restoreLeader: w.members[0]?.name ?? '',
    local: local(m),
    heartbeats,
    // The old cluster's snapshots exist whatever the chain: it existed.
    backups: { anySnapshot: true, ...(w.chain ? { chain: w.chain } : {}) },
    graceOver: m.rounds >= 3,
  };
  if (cluster) f.cluster = cluster;
  if (w.claim) f.recovery = { claim: w.claim.claim, version: String(w.claim.version) };
  return f;
}

function sameVerdict(a: Verdict, b: Verdict): boolean {
  return a.decision === b.decision && a.removeMemberId === b.removeMemberId && a.recovery?.source === b.recovery?.source && a.recovery?.epoch === b.recovery?.epoch;
}

function join(w: World, m: ModelMember, clusterId: string): void {
  const members = w.clusters.get(clusterId) as string[];
  if (!members.includes(m.name)) members.push(m.name);
  m.phase = 'running';
  m.cluster = clusterId;
  delete m.waiting;
}

/** One step of member `m`: what its sidecar and initializer do next. */
function step(w: World, m: ModelMember): void {
  switch (m.phase) {
    case 'gone':
      return;
    case 'running': {
      // The rule of src/initializer/rejoin.ts, with its TTL abstracted away: an etcd without quorum
      // while a member reports its data lost, or another cluster has quorum, is stopped by its
      // launcher and the member initializes again with its data.
      if (!m.cluster || hasQuorum(w, m.cluster)) return;
      const others = w.members.filter((o) => o !== m && o.phase !== 'down' && o.phase !== 'gone');
      const lostReported = others.some((o) => o.waiting?.dataLost === true && !(o.phase === 'running' && o.cluster && hasQuorum(w, o.cluster)));
      const elsewhere = others.some((o) => o.phase === 'running' && o.cluster !== undefined && o.cluster !== m.cluster && hasQuorum(w, o.cluster));
      if (!lostReported && !elsewhere) return;
      delete m.cluster;
      m.phase = 'initializing';
      return;
    }
    case 'down':
      m.phase = 'initializing';
      m.everStarted = true;
      return;
    case 'initializing': {
      const f = factsOf(w, m);
      const v = decide(f);
      m.rounds++;
      switch (v.decision) {
        case 'wait':
          m.waiting = f.cluster?.hasQuorum ? undefined : waitingReport(f);
          if (m.waiting === undefined) delete m.waiting;
          return;
        case 'use-existing': {
          const report = f.cluster?.hasQuorum ? undefined : waitingReport(f);
          if (f.cluster && m.data?.clusterId === f.cluster.clusterId) join(w, m, f.cluster.clusterId);
          else if (m.data) join(w, m, m.data.clusterId);
          if (report) m.waiting = report;
          return;
        }
        case 'join-existing':
        case 'join-as-learner':
        case 'replace':
          if (!f.cluster?.hasQuorum) throw new Error(`${m.name}: ${v.decision} without a cluster with quorum`);
          m.data = { clusterId: f.cluster.clusterId, raftIndex: 0, revision: 0 };
          join(w, m, f.cluster.clusterId);
          return;
        case 'bootstrap':
          w.violations.push(`${m.name} bootstrapped a cluster that existed: ${v.reason}`);
          return;
        case 'restore':
          m.pending = { verdict: v, claimVersion: undefined };
          m.phase = 'confirming';
          return;
      }
      return;
    }
    case 'confirming': {
      // The facts again right before the irreversible step; the claim's version as read now.
      const f = factsOf(w, m);
      const v = decide(f);
      if (!m.pending || !sameVerdict(v, m.pending.verdict)) {
        m.phase = 'initializing';
        delete m.pending;
        return;
      }
      m.pending.claimVersion = w.claim?.version;
      // What every member that had started by now holds: a member whose sidecar first appears after
      // this confirmation is not waited for (it was silent for the whole decision).
      m.pending.newestHeld = Math.max(-1, ...w.members.filter((o) => o.everStarted).map((o) => (o.data?.clusterId === OLD ? o.data.revision : -1)));
      m.phase = 'claiming';
      return;
    }
    case 'claiming': {
      const rec = m.pending?.verdict.recovery;
      if (!rec || !m.pending) throw new Error('claiming without a recovery');
      const mine: RecoveryClaim = { epoch: rec.epoch, holder: m.name, source: rec.source, state: 'claimed' };
      const same = w.claim && JSON.stringify(w.claim.claim) === JSON.stringify(mine);
      if (!same) {
        // The conditional write: only from the version read at confirmation.
        if (w.claim?.version !== m.pending.claimVersion) {
          m.phase = 'initializing';
          delete m.pending;
          return;
        }
        w.claim = { claim: mine, version: (w.claim?.version ?? 0) + 1 };
      }
      m.phase = 'restoring';
      return;
    }
    case 'restoring': {
      const rec = m.pending?.verdict.recovery;
      if (!rec) throw new Error('restoring without a recovery');
      const revision = rec.source === 'backups' ? (w.chain?.lastRevision ?? -1) : (m.data?.revision ?? -1);
      const newestHeld = m.pending?.newestHeld ?? -1;
      if (w.recoveries.some((r) => r.epoch === rec.epoch)) w.violations.push(`two recoveries in epoch ${rec.epoch}`);
      w.recoveries.push({ epoch: rec.epoch, holder: m.name, revision, newestHeld });
      const id = `r${rec.epoch}`;
      w.clusters.set(id, [m.name]);
      m.data = { clusterId: id, raftIndex: 1, revision };
      join(w, m, id);
      if (w.claim?.claim.holder === m.name) w.claim = { claim: { ...w.claim.claim, state: 'done' }, version: w.claim.version + 1 };
      delete m.pending;
      return;
    }
  }
}

function checkSafety(w: World): void {
  const alive = [...w.clusters.keys()].filter((c) => hasQuorum(w, c));
  if (alive.length > 1) w.violations.push(`two clusters with quorum: ${alive.join(', ')}`);
  if (w.recoveries.length > 1) w.violations.push(`recovered ${w.recoveries.length} times`);
  for (const r of w.recoveries) {
    const best = Math.max(r.newestHeld, w.chain?.lastRevision ?? -1);
    if (r.revision < best) w.violations.push(`${r.holder} recovered revision ${r.revision} while ${best} was held`);
  }
}

interface Start {
  copies: (Copy | undefined)[];
  gone: number | undefined;
  chain: number | undefined;
}

function worldOf(s: Start): World {
  const names = s.copies.map((_, i) => `m${i + 1}`);
  return {
    members: names.map((name, i) => {
      const data = s.copies[i];
      return { name, phase: i === s.gone ? 'gone' : 'down', rounds: 0, everStarted: false, ...(data ? { data: { ...data } } : { data: undefined }) };
    }),
    chain: s.chain === undefined ? undefined : { clusterId: OLD, lastRevision: s.chain },
    claim: undefined,
    clusters: new Map([[OLD, [...names]]]),
    recoveries: [],
    violations: [],
  };
}

/** The schedule given, then round-robin (fair) until nothing changes: returns the final world. */
function run(start: Start, schedule: readonly number[]): World {
  const w = worldOf(start);
  const n = w.members.length;
  for (const i of schedule) {
    step(w, w.members[i % n] as ModelMember);
    checkSafety(w);
    if (w.violations.length) return w;
  }
  for (let k = 0; k < 60 * n; k++) {
    step(w, w.members[k % n] as ModelMember);
    checkSafety(w);
    if (w.violations.length) return w;
  }
  return w;
}

function converged(w: World): string | undefined {
  const present = w.members.filter((m) => m.phase !== 'gone');
  const ids = new Set(present.map((m) => m.cluster));
  if (present.some((m) => m.phase !== 'running')) return `not all running: ${present.map((m) => `${m.name}=${m.phase}`).join(', ')}`;
  if (ids.size !== 1) return `members in ${ids.size} clusters`;
  const id = [...ids][0] as string;
  return hasQuorum(w, id) ? undefined : `cluster ${id} has no quorum`;
}

// Raft's log matching: two copies with the same last index hold the same entries, so the revision
// grows with the raft index (here one write per entry).
const copy = fc.option(
  fc.integer({ min: 1, max: 6 }).map((i): Copy => ({ clusterId: OLD, raftIndex: i, revision: i })),
  { nil: undefined, freq: 2 },
);

const start3: fc.Arbitrary<Start> = fc.record({
  copies: fc.tuple(copy, copy, copy).map((t) => [...t]),
  gone: fc.option(fc.nat(2), { nil: undefined, freq: 3 }),
  chain: fc.option(fc.integer({ min: 0, max: 7 }), { nil: undefined }),
});

function explain(start: Start, schedule: readonly number[], w: World): string {
  return `${JSON.stringify(start)} schedule ${schedule.join('')}: ${w.violations.join('; ')}`;
}

describe('the recovery protocol as a whole, modelled: members, store, claim and clusters', () => {
  it('every interleaving of the first 8 steps of three members, from a few hard starting points: safe, and converges once fair', () => {
    const starts: Start[] = [
      // one survivor, the others wiped; backups behind it
      { copies: [undefined, undefined, { clusterId: OLD, raftIndex: 5, revision: 5 }], gone: undefined, chain: 3 },
      // two copies of different lengths and backups between them
      { copies: [{ clusterId: OLD, raftIndex: 3, revision: 3 }, undefined, { clusterId: OLD, raftIndex: 6, revision: 6 }], gone: undefined, chain: 4 },
      // every copy lost, the preferred restorer gone for good
      { copies: [undefined, undefined, undefined], gone: 0, chain: 5 },
      // every copy lost, backups past nothing: all wait for the backups
      { copies: [undefined, undefined, undefined], gone: undefined, chain: 2 },
    ];
    let schedules = 0;
    for (const s of starts) {
      const walk = (prefix: number[]): void => {
        if (prefix.length === 8) {
          schedules++;
          const w = run(s, prefix);
          assert.deepEqual(w.violations, [], explain(s, prefix, w));
          const why = converged(w);
          assert.equal(why, undefined, `${JSON.stringify(s)} schedule ${prefix.join('')}: ${why}`);
          return;
        }
        for (let i = 0; i < 3; i++) walk([...prefix, i]);
      };
      walk([]);
    }
    assert.equal(schedules, 4 * 3 ** 8);
  });

  it('random starting points and random schedules beyond: safe always, converging whenever something is left to recover from', () => {
    fc.assert(
      fc.property(start3, fc.array(fc.nat(2), { maxLength: 40 }), (s, schedule) => {
        const w = run(s, schedule);
        assert.deepEqual(w.violations, [], explain(s, schedule, w));
        const recoverable = s.chain !== undefined || s.copies.some((c, i) => c !== undefined && i !== s.gone);
        if (recoverable) assert.equal(converged(w), undefined, `${JSON.stringify(s)} schedule ${schedule.join('')}`);
      }),
      { numRuns: 3_000 },
    );
  });
});
