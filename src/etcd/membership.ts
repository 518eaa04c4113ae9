/**
 * Membership changes, each sent to one chosen member (the raft leader's own endpoint where it
 * matters: a follower forwarding a change drops the auth token, seed 002) and bounded by one deadline.
 */
import { callWithin } from './call-deadline.js';
import type { EtcdMember } from './client.js';
import { toMember, type Member } from './members.js';

/** etcd wants member IDs as decimal uint64; the sidecar speaks hex, as etcdctl prints them. */
function decimalId(hex: string): string {
  return BigInt(`0x${hex}`).toString();
}

/** etcd's answer while a learner's log still lags the leader's: retry later, nothing is wrong. */
export const LEARNER_NOT_IN_SYNC = /can only promote a learner member which is in sync with leader/;

/** Resolves true when promoted, false when etcd says the learner is not in sync yet; throws otherwise. */
export async function promoteLearner(via: EtcdMember, memberIdHex: string, timeoutMs: number): Promise<boolean> {
  try {
    await callWithin('member promote', timeoutMs, (deadline) => via.cluster.memberPromote({ ID: decimalId(memberIdHex) }, { deadline }));
    return true;
  } catch (err) {
    if (LEARNER_NOT_IN_SYNC.test((err as Error).message)) return false;
    throw err;
  }
}

export async function removeMember(via: EtcdMember, memberIdHex: string, timeoutMs: number): Promise<void> {
  await callWithin('member remove', timeoutMs, (deadline) => via.cluster.memberRemove({ ID: decimalId(memberIdHex) }, { deadline }));
}

/** Adds a learner; returns the member list etcd answers with (the new member included). */
export async function addLearner(via: EtcdMember, peerURLs: readonly string[], timeoutMs: number): Promise<{ added: Member; members: Member[] }> {
  const res = await callWithin('member add', timeoutMs, (deadline) => via.cluster.memberAdd({ peerURLs: [...peerURLs], isLearner: true }, { deadline }));
  return { added: toMember(res.member), members: res.members.map(toMember) };
}
