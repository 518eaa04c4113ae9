/**
 * What the backup election asks of the own etcd member at every check: its status, and whether it
 * really leads (a linearizable read only a member in a quorum can serve). Also the learner's promotion.
 */
import type { EtcdClient, EtcdMember } from '../etcd/client.js';
import { confirmQuorum, readMemberStatus } from '../etcd/member-status.js';
import { promoteLearner } from '../etcd/membership.js';
import { withDeadline } from '../resilience.js';
import type { CheckResult } from './role.js';

/** What the last check learnt of the own member (for heartbeats and /status). */
export interface MemberFacts {
  memberId: string;
  clusterId: string;
  leaderId: string;
  learner: boolean;
  revision: number;
  raftIndex: number;
  raftTerm: number;
  at: Date;
}

/** One check: the role verdict and, when the member answered its status, what it said. */
export interface Check {
  result: CheckResult;
  facts?: MemberFacts;
}

/** The own member's status, within the deadline whatever the member does. */
export async function readMemberFacts(member: EtcdMember, deadlineMs: number): Promise<MemberFacts> {
  const s = await readMemberStatus(member, deadlineMs);
  return { memberId: s.memberId, clusterId: s.clusterId, leaderId: s.leaderId, learner: s.isLearner, revision: s.revision, raftIndex: s.raftIndex, raftTerm: s.raftTerm, at: new Date() };
}

/** A key nobody writes; reading it costs etcd a ReadIndex round, nothing more. */
const QUORUM_PROBE_KEY = '/etcd-backup-sidecar/quorum-probe';

/**
 * Asks the own member whether it leads, within `deadlineMs` in all. Leading is only confirmed by a
 * linearizable read answered by this member: etcd 3.4 serves it after a ReadIndex round with a
 * quorum, so a leader cut off from the others (frozen peers, partition; pre-vote is off and
 * CheckQuorum needs an election timeout) cannot confirm while it still reports itself leader.
 */
export async function checkOwnMember(member: EtcdMember, deadlineMs: number, standIn: (facts: MemberFacts) => boolean = () => false): Promise<Check> {
  const deadline = Date.now() + deadlineMs;
  let facts: MemberFacts;
  try {
    facts = await readMemberFacts(member, deadlineMs);
  } catch (err) {
    return { result: { kind: 'unconfirmed', reason: `own member did not answer its status: ${(err as Error).message}` } };
  }
  if (facts.leaderId === '0') return { result: { kind: 'unconfirmed', reason: 'own member knows no raft leader (election running or no quorum)' }, facts };
  const standing = facts.leaderId !== facts.memberId && !facts.learner && standIn(facts);
  if (facts.leaderId !== facts.memberId && !standing) return { result: { kind: 'follower', memberId: facts.memberId, leaderId: facts.leaderId }, facts };
  try {
    await confirmQuorum(member, QUORUM_PROBE_KEY, Math.max(1, deadline - Date.now()));
  } catch (err) {
    const claim = standing ? `stands in for the silent sidecar of leader ${facts.leaderId}` : 'reports itself leader';
    return { result: { kind: 'unconfirmed', reason: `own member ${claim} but a linearizable read failed (no quorum?): ${(err as Error).message}` }, facts };
  }
  return { result: standing ? { kind: 'leader', memberId: facts.memberId, standInFor: facts.leaderId } : { kind: 'leader', memberId: facts.memberId }, facts };
}

/**
 * Promotes the own learner member through the raft leader's own endpoint: a follower forwarding
 * the promote drops the auth token (seed 002). Resolves true when promoted, false when etcd says
 * the learner is not in sync yet (the role loop retries at a later check); throws otherwise.
 */
export async function promoteOwnLearner(client: Pick<EtcdClient, 'listMembers' | 'member'>, self: MemberFacts, timeoutMs: number): Promise<boolean> {
  const members = await withDeadline('member list', timeoutMs, () => client.listMembers());
  const url = members.find((m) => m.id === self.leaderId)?.clientURLs[0];
  if (!url) throw new Error(`the raft leader ${self.leaderId} has no client URL in the member list`);
  return promoteLearner(client.member(url), self.memberId, timeoutMs);
}
