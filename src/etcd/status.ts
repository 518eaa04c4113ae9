import type { EtcdClient } from './client.js';
import { clusterAlarms } from './alarms.js';
import { readMemberStatus } from './member-status.js';
import type { Member } from './members.js';

/** One member's answer to Maintenance.Status, or why there was none (like `etcdctl endpoint status`). */
export interface EndpointStatus {
  endpoint: string;
  reachable: boolean;
  latencyMs: number;
  error?: string;
  memberId?: string;
  clusterId?: string;
  leaderId?: string;
  revision?: number;
  dbSize?: number;
  dbSizeInUse?: number;
  raftTerm?: number;
  raftIndex?: number;
  raftAppliedIndex?: number;
  version?: string;
  isLearner?: boolean;
  /** Alarms and other errors the member reports about itself (NOSPACE, CORRUPT). */
  alarms: string[];
}

/** A member joined with its status: what `GET /status` lists. */
export interface MemberHealth extends Member {
  isLeader: boolean;
  /** Answered, knows a leader, and reports no alarm. */
  healthy: boolean;
  status?: EndpointStatus;
  error?: string;
}

export interface ClusterStatus {
  clusterId?: string;
  leader?: { id: string; name: string };
  members: MemberHealth[];
  voters: number;
  healthyVoters: number;
  hasQuorum: boolean;
  /** Set when no endpoint answered the member list; members then come from the probes alone. */
  memberListError?: string;
  /** Alarms raised, by the member they name (NOSPACE: the cluster refuses writes until it is disarmed). */
  alarms: { member: string; alarm: string }[];
  checkedAt: string;
  durationMs: number;
}

/** Status of one endpoint, bounded by the deadline whatever the member does (frozen, gone, slow). */
export async function probeEndpoint(client: EtcdClient, endpoint: string, timeoutMs: number): Promise<EndpointStatus> {
  const started = performance.now();
  try {
    const status = await readMemberStatus(client.member(endpoint), timeoutMs);
    return { endpoint, reachable: true, latencyMs: Math.round(performance.now() - started), ...status };
  } catch (err) {
    return { endpoint, reachable: false, latencyMs: Math.round(performance.now() - started), error: describeError(err), alarms: [] };
  }
}

function describeError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return /deadline exceeded/i.test(msg) ? 'no answer before the deadline (member frozen, overloaded or unreachable)' : msg;
}

/**
 * Every member's health, like `etcdctl endpoint status --cluster`, in about one deadline: the member
 * list and the status of every known endpoint are asked in parallel, each with its own deadline, so
 * a black-holed member never delays the others (seed 001). Members the list reveals that were not
 * probed yet are probed in a second round: the whole costs at most two deadlines.
 */
export async function clusterStatus(client: EtcdClient, timeoutMs: number, knownEndpoints: readonly string[]): Promise<ClusterStatus> {
  const started = performance.now();
  const probes = new Map<string, Promise<EndpointStatus>>();
  const probe = (url: string): Promise<EndpointStatus> => {
    let p = probes.get(url);
    if (!p) {
      p = probeEndpoint(client, url, timeoutMs);
      probes.set(url, p);
    }
    return p;
  };
  const firstRound = [...new Set([...knownEndpoints, ...client.endpoints()])];
  for (const url of firstRound) void probe(url);

  let members: Member[] | undefined;
  let memberListError: string | undefined;
  try {
    members = await client.listMembers(firstRound, timeoutMs);
  } catch (err) {
    memberListError = (err as Error).message;
  }
  for (const m of members ?? []) for (const url of m.clientURLs) void probe(url);
  const statuses = await Promise.all([...probes.values()]);
  return joinStatus(members, statuses, memberListError, started);
}

/** Joins the member list with the probes; pure, so the rules for "healthy" and "leader" are testable. */
export function joinStatus(members: Member[] | undefined, statuses: EndpointStatus[], memberListError: string | undefined, startedAt: number): ClusterStatus {
  const reachable = statuses.filter((s) => s.reachable);
  const byMemberId = new Map(reachable.map((s) => [s.memberId, s]));
  const byEndpoint = new Map(statuses.map((s) => [s.endpoint, s]));

  // Members that answered but are missing from the list (no list at all) still appear.
  const listed: Member[] =
    members ??
    statuses.map((s) => ({
      id: s.memberId ?? '',
      name: '',
      peerURLs: [],
      clientURLs: [s.endpoint],
      isLearner: s.isLearner ?? false,
      started: s.reachable,
    }));

  const leaderVotes = new Map<string, number>();
  for (const s of reachable) if (s.leaderId && s.leaderId !== '0') leaderVotes.set(s.leaderId, (leaderVotes.get(s.leaderId) ?? 0) + 1);
  const leaderId = [...leaderVotes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];

  const health: MemberHealth[] = listed.map((m) => {
    const status = byMemberId.get(m.id) ?? m.clientURLs.map((u) => byEndpoint.get(u)).find((s) => s !== undefined);
    const healthy = !!status?.reachable && status.leaderId !== '0' && status.alarms.length === 0;
    const entry: MemberHealth = { ...m, isLeader: m.id === leaderId, healthy };
    if (status) entry.status = status;
    if (!m.started) entry.error = 'member added but not started yet';
    else if (!status) entry.error = 'not probed (no client URL)';
    else if (!status.reachable) entry.error = status.error ?? 'unreachable';
    else if (status.leaderId === '0') entry.error = 'member has no leader';
    else if (status.alarms.length > 0) entry.error = `alarms: ${status.alarms.join(', ')}`;
    return entry;
  });

  const voters = health.filter((m) => !m.isLearner);
  const healthyVoters = voters.filter((m) => m.healthy).length;
  const result: ClusterStatus = {
    members: health,
    voters: voters.length,
    healthyVoters,
    hasQuorum: voters.length > 0 && healthyVoters > voters.length / 2,
    // Every member reports every member's alarms: each belongs to the member it names.
    alarms: clusterAlarms({ members: health }).map((a) => ({ member: health.find((m) => m.id === a.memberId)?.name || a.memberId, alarm: a.alarm })),
    checkedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - startedAt),
  };
  const clusterId = reachable.find((s) => s.clusterId)?.clusterId;
  if (clusterId) result.clusterId = clusterId;
  if (leaderId) result.leader = { id: leaderId, name: health.find((m) => m.id === leaderId)?.name ?? '' };
  if (memberListError) result.memberListError = memberListError;
  return result;
}
