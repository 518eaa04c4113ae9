// What a member does at start, decided from plain facts: no I/O, no clock, total. Every branch
// names its reason, because the operator reading `GET /initialize` at 3 a.m. needs the why.
//
// Safety comes first, availability second: when the facts cannot prove that an action is safe
// (restoring while a peer might still hold newer data, bootstrapping where a cluster once lived),
// the member waits and says what would unblock it.

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

/** What a member's heartbeat in the store says (see src/cluster/heartbeat.ts). */
export interface MemberRecord {
  name: string;
  memberId?: string;
  clusterId?: string;
  raftIndex?: number;
  /** Its etcd answered when the heartbeat was written. */
  etcdUp: boolean;
  /** Its initializer waits for the designated restorer: its own data is unusable. */
  awaitingRestore: boolean;
  /** Written within --heartbeat-ttl. */
  live: boolean;
}

export interface BackupFacts {
  /** The latest restorable chain, if any. */
  chain?: { clusterId?: string; lastRevision: number };
  /** Any snapshot object at all, restorable or not: the cluster existed. */
  anySnapshot: boolean;
}

export interface InitFacts {
  self: { name: string; peerURLs: string[] };
  /** Every configured member (--initial-cluster). */
  initialCluster: { name: string; peerURL: string }[];
  /** The one member allowed to restore a multi-member cluster. */
  restoreLeader: string;
  local: LocalData;
  /** Undefined when no configured endpoint answered. */
  cluster?: RunningCluster;
  /** Every heartbeat in the store, this member's own included, live or not (one without a cluster ID: no etcd answered its sidecar yet). */
  heartbeats: MemberRecord[];
  backups: BackupFacts;
  /**
   * The initializer has waited long enough (--heartbeat-ttl) to hear from every other member;
   * absent means yes. Until then the designated restorer does not start its own data blindly.
   */
  graceOver?: boolean;
}

export interface Verdict {
  decision: Decision;
  reason: string;
  /** For `replace`: the member ID to remove first. */
  removeMemberId?: string;
  /**
   * For `use-existing` by the designated restorer when every other member lost its data: start
   * with --force-new-cluster, a one-member cluster the others then join as learners.
   */
  forceNewCluster?: boolean;
}

const sameURLs = (a: readonly string[], b: readonly string[]): boolean => a.some((u) => b.includes(u));

/** This member's entry in the running cluster: by name, or by peer URL for a member never started. */
export function findSelf(cluster: RunningCluster, self: InitFacts['self']): ClusterMember | undefined {
  return cluster.members.find((m) => (m.name !== '' && m.name === self.name) || sameURLs(m.peerURLs, self.peerURLs));
}

/** The db's revision when it is known to be final: every WAL entry is applied, none to replay. */
export function exactRevision(local: LocalData): number | undefined {
  if (local.state !== 'valid' || local.revision === undefined) return undefined;
  if (local.raftIndex === undefined || local.consistentIndex === undefined) return undefined;
  return local.raftIndex <= local.consistentIndex ? local.revision : undefined;
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

function decideWithCluster(facts: InitFacts, cluster: RunningCluster): Verdict {
  const me = findSelf(cluster, facts.self);
  const noQuorum = `the cluster ${cluster.clusterId} answers but has no quorum, so its membership cannot change`;
  if (!me) {
    if (!cluster.hasQuorum) return { decision: 'wait', reason: `this member is not in the running cluster and ${noQuorum}` };
    return { decision: 'join-as-learner', reason: `the cluster ${cluster.clusterId} is running without this member: add it as a learner, start it empty, promote it once in sync` };
  }
  const problem = unusable(facts, cluster.clusterId, me.id);
  if (!problem) return { decision: 'use-existing', reason: `the data dir belongs to member ${me.id} of the running cluster ${cluster.clusterId}` };
  if (!me.started && (facts.local.state === 'missing' || facts.local.state === 'empty')) {
    return { decision: 'join-existing', reason: `the cluster ${cluster.clusterId} lists this member as added but never started, and the data dir is ${facts.local.state}: start it with initial-cluster-state existing` };
  }
  if (!cluster.hasQuorum) return { decision: 'wait', reason: `${problem}, and ${noQuorum} (the member cannot be replaced until it has quorum again)` };
  return { decision: 'replace', reason: `${problem}: remove member ${me.id} through the leader, wipe the data dir, rejoin as a learner`, removeMemberId: me.id };
}

/**
 * Why the local data cannot be started when no cluster answers (the cluster it belongs to is then
 * the one its own last heartbeat names), or undefined.
 */
export function localDataProblem(facts: InitFacts): string | undefined {
  const own = facts.heartbeats.find((h) => h.name === facts.self.name);
  return unusable(facts, own?.clusterId, own?.memberId);
}

/** The backups of this data's cluster reach past `revision`. */
function backupsPast(facts: InitFacts, revision: number | undefined): boolean {
  const chain = facts.backups.chain;
  if (!chain || revision === undefined) return false;
  return chain.lastRevision > revision && (chain.clusterId === undefined || chain.clusterId === facts.local.clusterId);
}

function decideWithoutCluster(facts: InitFacts): Verdict {
  const { self, heartbeats, backups } = facts;
  const single = facts.initialCluster.length <= 1;
  const others = heartbeats.filter((h) => h.name !== self.name);
  const problem = localDataProblem(facts);
  const peerUp = others.find((h) => h.live && h.etcdUp);
  const hasBackups = backups.chain !== undefined;
  // A heartbeat proves the cluster existed only when it names one: sidecars beat from their first
  // second, before any etcd ran, and a bootstrap must not wait on its own members' heartbeats.
  const existed = backups.anySnapshot || heartbeats.some((h) => h.clusterId !== undefined) || facts.local.state === 'valid' || facts.local.state === 'corrupt';

  if (!problem) {
    const exact = exactRevision(facts.local);
    if (single && backupsPast(facts, exact) && backups.chain) {
      return { decision: 'restore', reason: `the data dir stops at revision ${exact}, but the backups reach ${backups.chain.lastRevision}: restore the newer state` };
    }
    // Every other member lost its data: this copy and the backups are all that is left. The copy
    // started alone keeps only what it knew committed (etcd drops the rest of its log), so a write
    // the others acknowledged can be missing from it, while the backups hold what the leader
    // applied. The backups win whenever they reach past what this db holds.
    if (!single && self.name === facts.restoreLeader && !peerUp && othersAwaitRestore(facts)) {
      if (backupsPast(facts, facts.local.revision) && backups.chain) return { decision: 'restore', reason: `every other member lost its data and waits; the backups (revision ${backups.chain.lastRevision}) reach past this data dir (${facts.local.revision}): restore them as a one-member cluster the others join` };
      return { decision: 'use-existing', forceNewCluster: true, reason: 'every other member lost its data and waits; this data dir is the newest copy: start it as a one-member cluster (--force-new-cluster) the others join as learners' };
    }
    if (!single && self.name === facts.restoreLeader && !peerUp && facts.graceOver === false) {
      // Started alone with its data, this member would wait for a quorum that members whose data is
      // lost can never give; it first hears whether they still have theirs.
      const unheard = facts.initialCluster.filter((m) => m.name !== self.name && !others.some((h) => h.name === m.name && h.live && (h.etcdUp || h.awaitingRestore))).map((m) => m.name);
      if (unheard.length > 0) return { decision: 'wait', reason: `no cluster answers; before starting its data this member (the designated restorer) waits to hear whether ${unheard.join(', ')} still ${unheard.length > 1 ? 'have' : 'has'} data, up to --heartbeat-ttl` };
    }
    return { decision: 'use-existing', reason: single ? 'the data dir is valid and no newer backup exists' : 'no cluster answers and the data dir is valid: a restart of the cluster, its members meet again with their data' };
  }

  if (peerUp) return { decision: 'wait', reason: `${problem}; member ${peerUp.name} reports its etcd up (heartbeat) though no endpoint answers yet: wait for the cluster rather than start a second one` };
  if (!existed) return { decision: 'bootstrap', reason: 'no cluster answers, no backup and no heartbeat exist, the data dir is empty: bootstrap a new cluster' };
  if (!hasBackups) {
    return { decision: 'wait', reason: `${problem}; this cluster existed (${backups.anySnapshot ? 'snapshots without a restorable chain' : 'heartbeats of its members, or data'}) but no restorable backup exists: bootstrapping empty would lose it. An operator must restore or clear the store.` };
  }
  if (single) return { decision: 'restore', reason: `${problem}; no cluster is running: restore from the backups` };
  if (self.name !== facts.restoreLeader) return { decision: 'wait', reason: `${problem}; no cluster is running and only ${facts.restoreLeader} (the designated restorer) may restore: wait for it, then join` };
  if (!othersAwaitRestore(facts)) {
    const silent = facts.initialCluster.filter((m) => m.name !== self.name && !others.some((h) => h.name === m.name && h.live && h.awaitingRestore)).map((m) => m.name);
    return { decision: 'wait', reason: `${problem}; this member is the designated restorer, but ${silent.join(', ')} ${silent.length > 1 ? 'have' : 'has'} not reported ${silent.length > 1 ? 'their' : 'its'} data lost: ${silent.length > 1 ? 'one of them' : 'it'} may still hold newer data, and restoring now could split the cluster` };
  }
  return { decision: 'restore', reason: `${problem}; every other member lost its data and waits: restore as a one-member cluster the others join as learners` };
}

/** Every other configured member has a live heartbeat saying it waits for the restorer. */
function othersAwaitRestore(facts: InitFacts): boolean {
  return facts.initialCluster
    .filter((m) => m.name !== facts.self.name)
    .every((m) => facts.heartbeats.some((h) => h.name === m.name && h.live && h.awaitingRestore && !h.etcdUp));
}

export function decide(facts: InitFacts): Verdict {
  return facts.cluster ? decideWithCluster(facts, facts.cluster) : decideWithoutCluster(facts);
}
