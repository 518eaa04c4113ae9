// What a member does at start, decided from plain facts: no I/O, no clock, total. Every branch
// names its reason, because the operator reading `GET /initialize` at 3 a.m. needs the why.
//
// Safety comes first, availability second: when the facts cannot prove that an action is safe
// (restoring while a peer might still hold newer data, bootstrapping where a cluster once lived),
// the member waits and says what would unblock it.

import type { WaitingReport } from '../cluster/heartbeat.js';

export type Decision = 'use-existing' | 'join-existing' | 'join-as-learner' | 'replace' | 'restore' | 'wait' | 'bootstrap';

/** The member's own data dir, as inspected before etcd starts. */
export interface LocalData {
  state: 'missing' | 'empty' | 'valid' | 'corrupt';
  reason?: string;
  memberId?: string;
  clusterId?: string;
  /** Last raft index in the WAL. */
  raftIndex?: number;
  /** Revision in the db; exact only when the db has applied every WAL entry (see `exactRevision`). */
  revision?: number;
  /** Last raft index applied to the db. */
  consistentIndex?: number;
}

export interface ClusterMember {
  id: string;
  /** Empty for a member that was added but never started. */
  name: string;
  peerURLs: string[];
  learner: boolean;
  started: boolean;
}

/** A cluster some configured endpoint answers for (this member's own etcd is not running yet). */
export interface RunningCluster {
  clusterId: string;
  members: ClusterMember[];
  /** A leader is known and a majority of voters answers: membership changes can commit. */
  hasQuorum: boolean;
}

export type { WaitingReport };

/** What a member's heartbeat in the store says (see src/cluster/heartbeat.ts). */
export interface MemberRecord {
  name: string;
  memberId?: string;
  clusterId?: string;
  raftIndex?: number;
  /** Its etcd answered when the heartbeat was written. */
  etcdUp: boolean;
  /** Its etcd is a member of a cluster whose leader it confirmed (the cluster has quorum). */
  inQuorum?: boolean;
  /** Its initializer waits because no cluster with quorum answers; what it holds. */
  waiting?: WaitingReport;
  /** Seen to change within --heartbeat-ttl, by this reader's clock. */
  live: boolean;
}

/** The recovery of a multi-member cluster that lost quorum, as the store arbitrates it (src/initializer/claim.ts). */
export interface RecoveryClaim {
  /** Increases by one per recovery; a restore names the epoch it acts in. */
  epoch: number;
  /** The one member allowed to restore in this epoch. */
  holder: string;
  source: RecoverySource;
  /** `done`: the holder restored and started the recovered cluster. */
  state: 'claimed' | 'done';
}

/** Where a recovery takes the data from: the backups, or the newest surviving data dir. */
export type RecoverySource = 'backups' | 'local-copy';

export interface BackupFacts {
  /** The latest restorable chain, if any. */
  chain?: { clusterId?: string; lastRevision: number; /** Revisions missing after `lastRevision` (the chain restores only up to it). */ gaps?: { from: number; to: number }[] };
  /** Any snapshot object at all, restorable or not: the cluster existed. */
  anySnapshot: boolean;
}

export interface RecoveryFacts {
  claim?: RecoveryClaim;
  /** The claim object's version in the store, for the conditional write of the next one. */
  version?: string;
}

export interface InitFacts {
  self: { name: string; peerURLs: string[] };
  /** Every configured member (--initial-cluster). */
  initialCluster: { name: string; peerURL: string }[];
  /** The one member allowed to restore a multi-member cluster. */
  restoreLeader: string;
  /** Learners the cluster may hold at once (etcd 3.6's --max-learners; 3.4 and 3.5 allow one). Default 1. */
  maxLearners?: number;
  local: LocalData;
  /** Undefined when no configured endpoint answered. */
  cluster?: RunningCluster;
  /** Every heartbeat in the store, this member's own included, live or not (one without a cluster ID: no etcd answered its sidecar yet). */
  heartbeats: MemberRecord[];
  backups: BackupFacts;
  /** The recovery claim in the store; absent when none was ever written. */
  recovery?: RecoveryFacts;
  /**
   * Why heartbeats, backups and the recovery claim are unknown (the store did not answer); they
   * are then empty and only decisions that need none of them are made.
   */
  storeError?: string;
  /**
   * The initializer has waited long enough (--heartbeat-ttl) to hear from every other member;
   * absent means yes. Until then no member starts its data alone or recovers without all of them.
   */
  graceOver?: boolean;
}

export interface Verdict {
  decision: Decision;
  reason: string;
  /** For `replace`: the member ID to remove first. */
  removeMemberId?: string;
  /**
   * For a multi-member `restore` (a recovery): where the data comes from, and the epoch it acts
   * in, claimed in the store before anything is touched.
   */
  recovery?: { source: RecoverySource; epoch: number };
}

const sameURLs = (a: readonly string[], b: readonly string[]): boolean => a.some((u) => b.includes(u));

/** This member's entry in the running cluster: by name, or by peer URL for a member never started. */
export function findSelf(cluster: RunningCluster, self: InitFacts['self']): ClusterMember | undefined {
  return cluster.members.find((m) => (m.name !== '' && m.name === self.name) || sameURLs(m.peerURLs, self.peerURLs));
}

/**
 * The highest revision the data can hold once etcd replays its WAL: the db's revision plus one per
 * WAL entry not yet applied to the db (one raft entry is one request, which moves the revision by
 * at most one). Backups reaching past this hold writes this data cannot have.
 */
export function revisionBound(local: LocalData): number | undefined {
  if (local.state !== 'valid' || local.revision === undefined) return undefined;
  const unapplied = local.raftIndex !== undefined && local.consistentIndex !== undefined ? Math.max(0, local.raftIndex - local.consistentIndex) : 0;
  return local.revision + unapplied;
}

/**
 * Why the local data cannot be started as it is, or undefined when it can. `clusterId` is the
 * cluster this member belongs to as far as the facts know (the running one, else its last heartbeat).
 */
function unusable(facts: InitFacts, clusterId: string | undefined, listedId: string | undefined): string | undefined {
  const { local } = facts;
  if (local.state === 'missing' || local.state === 'empty') return `the data dir is ${local.state}`;
  if (local.state === 'corrupt') return `the data dir is corrupt (${local.reason ?? 'unreadable'})`;
  if (clusterId !== undefined && local.clusterId !== undefined && local.clusterId !== clusterId) {
    return `the data dir belongs to cluster ${local.clusterId}, not to cluster ${clusterId}`;
  }
  if (listedId !== undefined && local.memberId !== undefined && local.memberId !== listedId) {
    return `the data dir belongs to member ${local.memberId}, but the cluster lists this member as ${listedId}`;
  }
  const own = facts.heartbeats.find((h) => h.name === facts.self.name);
  if (own && own.clusterId === local.clusterId && own.memberId === local.memberId && own.raftIndex !== undefined && local.raftIndex !== undefined && own.raftIndex > local.raftIndex) {
    return `the data dir went back in time: its WAL ends at raft index ${local.raftIndex}, but this member had reached ${own.raftIndex} (its last heartbeat)`;
  }
  return undefined;
}

/**
 * Why this member cannot be added as a learner now, or undefined: the cluster holds as many learners
 * as etcd allows. etcd would refuse the member add; waiting says why, and a replace waits before it
 * removes this member, or it would leave the cluster one voter short with no way back in.
 */
function learnerLimit(facts: InitFacts, cluster: RunningCluster, me: ClusterMember | undefined): string | undefined {
  const max = facts.maxLearners ?? 1;
  const others = cluster.members.filter((m) => m.learner && m !== me);
  if (others.length < max) return undefined;
  const names = others.map((m) => m.name || m.id).join(', ');
  return `the cluster ${cluster.clusterId} already holds ${others.length} learner${others.length === 1 ? '' : 's'} (${names}) and allows ${max} (--max-learners): wait until ${others.length === 1 ? 'it is' : 'they are'} promoted or removed`;
}

function decideWithQuorum(facts: InitFacts, cluster: RunningCluster): Verdict {
  const me = findSelf(cluster, facts.self);
  if (!me) {
    const full = learnerLimit(facts, cluster, me);
    if (full) return { decision: 'wait', reason: `this member is not in the running cluster, but ${full}` };
    return { decision: 'join-as-learner', reason: `the cluster ${cluster.clusterId} is running without this member: add it as a learner, start it empty, promote it once in sync` };
  }
  const problem = unusable(facts, cluster.clusterId, me.id);
  if (!problem) {
    const unchecked = facts.storeError ? ` (the store is unreachable, so its last heartbeat could not be compared: ${facts.storeError})` : '';
    return { decision: 'use-existing', reason: `the data dir belongs to member ${me.id} of the running cluster ${cluster.clusterId}${unchecked}` };
  }
  if (!me.started && (facts.local.state === 'missing' || facts.local.state === 'empty')) {
    return {
      decision: 'join-existing',
      reason: `the cluster ${cluster.clusterId} lists this member as added but never started, and the data dir is ${facts.local.state}: start it with initial-cluster-state existing`,
    };
  }
  const full = learnerLimit(facts, cluster, me);
  if (full) return { decision: 'wait', reason: `${problem}, but ${full} before this member is removed and added again` };
  return { decision: 'replace', reason: `${problem}: remove member ${me.id} through the leader, wipe the data dir, rejoin as a learner`, removeMemberId: me.id };
}

/**
 * Why the local data cannot be started when no cluster with quorum answers, or undefined. The
 * cluster it belongs to is the one answering (without quorum), else the one its last heartbeat names.
 */
export function localDataProblem(facts: InitFacts): string | undefined {
  const own = facts.heartbeats.find((h) => h.name === facts.self.name);
  if (facts.cluster) {
    const me = findSelf(facts.cluster, facts.self);
    return unusable(facts, facts.cluster.clusterId, me?.id ?? own?.memberId);
  }
  // The holder of an unfinished recovery may have restarted after its data dir was swapped for the
  // recovered one and before its heartbeat said so: either identity is its own data then.
  const claim = facts.recovery?.claim;
  if (claim?.holder === facts.self.name && claim.state === 'claimed') return unusable(facts, undefined, undefined);
  return unusable(facts, own?.clusterId, own?.memberId);
}

/** What this member reports of its data while it waits: the others choose the newest copy from it. */
export function waitingReport(facts: InitFacts): WaitingReport {
  const { local } = facts;
  if (localDataProblem(facts) !== undefined) return { dataLost: true };
  const r: WaitingReport = { dataLost: false };
  if (local.clusterId !== undefined) r.clusterId = local.clusterId;
  if (local.memberId !== undefined) r.memberId = local.memberId;
  if (local.raftIndex !== undefined) r.raftIndex = local.raftIndex;
  const bound = revisionBound(local);
  if (bound !== undefined) r.revisionBound = bound;
  return r;
}

/** The backups of this data's cluster reach past `revision`. */
function backupsPast(facts: InitFacts, revision: number | undefined, clusterId: string | undefined): boolean {
  const chain = facts.backups.chain;
  if (!chain || revision === undefined) return false;
  return chain.lastRevision > revision && (chain.clusterId === undefined || clusterId === undefined || chain.clusterId === clusterId);
}

const plural = (names: readonly string[], one: string, many: string): string => (names.length > 1 ? many : one);

function decideSingle(facts: InitFacts, problem: string | undefined, existed: boolean): Verdict {
  const { backups } = facts;
  if (!problem) {
    const bound = revisionBound(facts.local);
    if (backupsPast(facts, bound, facts.local.clusterId) && backups.chain) {
      return { decision: 'restore', reason: `the data dir holds at most revision ${bound}, but the backups reach ${backups.chain.lastRevision}: restore the newer state` };
    }
    return { decision: 'use-existing', reason: 'the data dir is valid and no newer backup exists' };
  }
  if (!existed) return { decision: 'bootstrap', reason: 'no cluster answers, no backup and no heartbeat exist, the data dir is empty: bootstrap a new cluster' };
  if (!backups.chain)
    return { decision: 'wait', reason: `${problem}; this cluster existed but no restorable backup exists: bootstrapping empty would lose it. An operator must restore or clear the store.` };
  return { decision: 'restore', reason: `${problem}; no cluster is running: restore from the backups` };
}

/** A member taking part in a recovery: it waits without a cluster with quorum and says what it holds. */
interface Participant {
  name: string;
  report: WaitingReport;
}

/**
 * The members that take part in a recovery now: this one, and every configured member whose live
 * heartbeat says its initializer waits for want of a cluster with quorum.
 */
function participants(facts: InitFacts): Participant[] {
  const out: Participant[] = [{ name: facts.self.name, report: waitingReport(facts) }];
  for (const m of facts.initialCluster) {
    if (m.name === facts.self.name) continue;
    const h = facts.heartbeats.find((x) => x.name === m.name && x.live && x.waiting !== undefined);
    if (h?.waiting) out.push({ name: h.name, report: h.waiting });
  }
  return out;
}

/**
 * Who recovers, and from what: the newest surviving copy (highest raft index, then the preferred
 * restorer, then the name) unless the backups reach past everything it can hold; from the backups,
 * the preferred restorer when it takes part, else the first participant by name. Every member that
 * reads the same reports picks the same holder; the claim in the store settles a race anyway.
 */
export function chooseRecovery(facts: InitFacts, present: readonly Participant[]): { holder: string; source: RecoverySource; why: string } | undefined {
  const chainCluster = facts.backups.chain?.clusterId;
  const claim = facts.recovery?.claim;
  // A holder that restarted mid-recovery resumes it the same way: its data may already be the
  // recovered cluster's (a new raft log, so its raft index compares with nobody's), and doing the
  // same restore again gives the same data.
  const resumer = claim?.state === 'claimed' ? present.find((p) => p.name === claim.holder) : undefined;
  if (claim && resumer && (claim.source === 'backups' ? facts.backups.chain !== undefined : !resumer.report.dataLost)) {
    return { holder: resumer.name, source: claim.source, why: `${resumer.name} resumes the recovery of epoch ${claim.epoch} from ${claim.source === 'backups' ? 'the backups' : 'its own data'}` };
  }
  const copies = present
    .filter((p) => !p.report.dataLost && p.report.raftIndex !== undefined && p.report.revisionBound !== undefined)
    .filter((p) => chainCluster === undefined || p.report.clusterId === undefined || p.report.clusterId === chainCluster || !facts.backups.chain);
  const rank = (p: Participant): [number, number, number, string] => [p.report.raftIndex ?? -1, p.report.revisionBound ?? -1, p.name === facts.restoreLeader ? 1 : 0, p.name];
  copies.sort((a, b) => {
    const [ra, va, pa, na] = rank(a);
    const [rb, vb, pb, nb] = rank(b);
    return rb - ra || vb - va || pb - pa || (na < nb ? -1 : na > nb ? 1 : 0);
  });
  const best = copies[0];
  const chain = facts.backups.chain;
  if (chain && (!best || chain.lastRevision > (best.report.revisionBound ?? -1))) {
    const preferred = present.find((p) => p.name === facts.restoreLeader);
    const holder = preferred ?? [...present].sort((a, b) => (a.name < b.name ? -1 : 1))[0];
    if (!holder) return undefined;
    const why = best
      ? `the backups (revision ${chain.lastRevision}) reach past the newest surviving copy (${best.name}, at most revision ${best.report.revisionBound})`
      : `no member holds usable data; the backups reach revision ${chain.lastRevision}`;
    return { holder: holder.name, source: 'backups', why };
  }
  if (!best) return undefined;
  return {
    holder: best.name,
    source: 'local-copy',
    why: `${best.name} holds the newest copy (raft index ${best.report.raftIndex}, at most revision ${best.report.revisionBound})${chain ? `; the backups reach only revision ${chain.lastRevision}` : ''}`,
  };
}

/** The members that kept the data of one cluster, when they are a majority of the configured members. */
function majorityKeepers(present: readonly Participant[], majority: number): { clusterId: string; members: string[] } | undefined {
  const byCluster = new Map<string, string[]>();
  for (const p of present) {
    if (p.report.dataLost || p.report.clusterId === undefined) continue;
    byCluster.set(p.report.clusterId, [...(byCluster.get(p.report.clusterId) ?? []), p.name]);
  }
  for (const [clusterId, members] of byCluster) if (members.length >= majority) return { clusterId, members };
  return undefined;
}

function decideWithoutQuorum(facts: InitFacts): Verdict {
  const { self, heartbeats } = facts;
  const single = facts.initialCluster.length <= 1;
  const others = heartbeats.filter((h) => h.name !== self.name && h.live);
  const problem = localDataProblem(facts);
  const noQuorum = facts.cluster ? `the cluster ${facts.cluster.clusterId} answers without quorum` : 'no cluster answers';
  if (facts.cluster && !problem) {
    // A member of the answering cluster with its data: starting it can only help that cluster
    // regain quorum (a member that lost its data is then replaced), and needs no store fact.
    return { decision: 'use-existing', reason: `${noQuorum}; the data dir belongs to it: start it, its members meet again` };
  }
  if (facts.storeError)
    return { decision: 'wait', reason: `${noQuorum} and the object store is unreachable (${facts.storeError}): without heartbeats and backups nothing proves a start safe; retrying` };

  const quorumPeer = others.find((h) => h.etcdUp && h.inQuorum);
  if (quorumPeer)
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; member ${quorumPeer.name} reports its etcd in a cluster with quorum though no endpoint answers for it yet: wait for that cluster rather than start a second one`,
    };
  // A heartbeat proves the cluster existed only when it names one: sidecars beat from their first
  // second, before any etcd ran, and a bootstrap must not wait on its own members' heartbeats.
  const existed =
    facts.backups.anySnapshot ||
    heartbeats.some((h) => h.clusterId !== undefined) ||
    facts.local.state === 'valid' ||
    facts.local.state === 'corrupt' ||
    facts.cluster !== undefined ||
    facts.recovery?.claim !== undefined;
  if (single) {
    if (facts.cluster)
      return {
        decision: 'wait',
        reason: `${problem}; yet an etcd of cluster ${facts.cluster.clusterId} answers at a configured endpoint: restoring beside it would start a second cluster. Stop it or fix --endpoints`,
      };
    return decideSingle(facts, problem, existed);
  }

  const peerUp = others.find((h) => h.etcdUp && h.waiting === undefined);
  if (problem && !existed && !peerUp) return { decision: 'bootstrap', reason: 'no cluster answers, no backup and no heartbeat exist, the data dir is empty: bootstrap a new cluster' };

  const present = participants(facts);
  const lost = present.filter((p) => p.report.dataLost).map((p) => p.name);
  const unheard = facts.initialCluster.filter((m) => !present.some((p) => p.name === m.name)).map((m) => m.name);
  // A member whose sidecar beats but has not reported is starting (its initializer's first round
  // can take seconds): it may hold the newest copy, so nobody acts before it reports. Only a member
  // silent for --heartbeat-ttl counts as gone.
  const starting = unheard.filter((n) => others.some((h) => h.name === n));
  if (starting.length > 0) {
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; ${starting.join(', ')} ${plural(starting, 'is', 'are')} alive (${plural(starting, 'its', 'their')} sidecar beats) but ${plural(starting, 'has', 'have')} not reported what ${plural(starting, 'it holds', 'they hold')}: wait for ${plural(starting, 'it', 'them')}`,
    };
  }
  const majority = Math.floor(facts.initialCluster.length / 2) + 1;
  if (!problem && lost.length === 0) {
    // Every member heard from kept its data: a restart of the cluster, its members meet again. A
    // member not heard from yet may have lost its data, and the quorum this member would wait for
    // could then never form: it first hears from everyone, up to --heartbeat-ttl, and never starts
    // with less than a majority (an etcd without quorum serves nothing, and a running etcd would
    // keep this copy out of a recovery once the others report their data lost).
    if (unheard.length > 0 && (facts.graceOver === false || present.length < majority)) {
      const needs = facts.graceOver === false ? 'up to --heartbeat-ttl' : `until a majority (${majority}) reports`;
      return { decision: 'wait', reason: `${noQuorum}; before starting its data this member waits to hear whether ${unheard.join(', ')} still ${plural(unheard, 'has', 'have')} data, ${needs}` };
    }
    return { decision: 'use-existing', reason: `${noQuorum} and the data dir is valid: a restart of the cluster, its members meet again with their data` };
  }

  // Some member lost its data and no cluster has quorum: the cluster must be recovered, once.
  if (facts.cluster) {
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; ${lost.join(', ')} lost ${plural(lost, 'its', 'their')} data, but an etcd of cluster ${facts.cluster.clusterId} still runs: recovering now would leave its copy out. Wait for it to stop (its sidecar then reports what it holds) or for its cluster to regain quorum`,
    };
  }
  const claim = facts.recovery?.claim;
  if (claim && claim.holder !== self.name) {
    const holder = heartbeats.find((h) => h.name === claim.holder);
    const holderBusy = holder?.live === true && holder.waiting === undefined;
    if (holderBusy) {
      const what = claim.state === 'claimed' ? `recovers the cluster from ${claim.source === 'backups' ? 'the backups' : 'its own data'}` : 'recovered the cluster and starts it';
      return { decision: 'wait', reason: `${problem ?? noQuorum}; member ${claim.holder} ${what} (recovery epoch ${claim.epoch}): wait for it, then join` };
    }
  }
  // A majority still holds the cluster's data: started again, they have quorum and the others are
  // replaced by it, with nothing recovered and no new cluster ID. Every committed write is on a
  // majority of the members, and two majorities share a member: nothing committed is lost, and no
  // backup can reach further. Every member that reads the same reports sees the same majority, so
  // no member recovers beside it.
  const keepers = majorityKeepers(present, majority);
  if (keepers && claim?.state !== 'claimed') {
    const names = keepers.members.join(', ');
    if (!problem && facts.local.clusterId === keepers.clusterId) {
      return {
        decision: 'use-existing',
        reason: `${noQuorum}; ${lost.join(', ')} lost ${plural(lost, 'its', 'their')} data, but ${names} (a majority) kept theirs: they start the cluster again, and the others are replaced once it has quorum`,
      };
    }
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; ${names} (a majority) kept the data of cluster ${keepers.clusterId}: they start it again, and this member is replaced once it has quorum`,
    };
  }
  if (peerUp && claim?.holder !== peerUp.name) {
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; member ${peerUp.name} reports its etcd up (heartbeat) and has not joined the recovery: wait for it to stop or for its cluster to answer`,
    };
  }
  if (unheard.length > 0 && (facts.graceOver === false || present.length < majority)) {
    const needs = facts.graceOver === false ? 'up to --heartbeat-ttl, then a majority suffices' : `a majority (${majority}) must take part`;
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; ${lost.join(', ')} lost ${plural(lost, 'its', 'their')} data: the cluster needs a recovery, but ${unheard.join(', ')} ${plural(unheard, 'has', 'have')} not reported what ${plural(unheard, 'it holds', 'they hold')} (${needs})`,
    };
  }
  const choice = chooseRecovery(facts, present);
  if (!choice) {
    return {
      decision: 'wait',
      reason: `${problem ?? noQuorum}; ${lost.join(', ')} lost ${plural(lost, 'its', 'their')} data, no member that takes part holds usable data and no restorable backup exists: bootstrapping empty would lose the cluster. An operator must restore or clear the store.`,
    };
  }
  if (choice.holder !== self.name) return { decision: 'wait', reason: `${problem ?? noQuorum}; ${choice.why}: ${choice.holder} recovers the cluster, the others join it` };
  const epoch = claim?.holder === self.name && claim.state === 'claimed' ? claim.epoch : (claim?.epoch ?? 0) + 1;
  return {
    decision: 'restore',
    reason: `${problem ?? noQuorum}; ${lost.join(', ')} lost ${plural(lost, 'its', 'their')} data; ${choice.why}: this member recovers the cluster as a one-member cluster the others join as learners (recovery epoch ${epoch})`,
    recovery: { source: choice.source, epoch },
  };
}

export function decide(facts: InitFacts): Verdict {
  return facts.cluster?.hasQuorum ? decideWithQuorum(facts, facts.cluster) : decideWithoutQuorum(facts);
}
