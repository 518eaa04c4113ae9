/**
 * Questions asked of one member about itself: its status and whether it can serve a linearizable
 * read. Both are bounded by one deadline whatever the member does (call-deadline.ts).
 */
import { callWithin } from './call-deadline.js';
import type { EtcdMember } from './client.js';
import { memberIdHex } from './members.js';

/** Maintenance.Status of one member, with IDs as etcd prints them (hex) and numbers as numbers. */
export interface MemberStatus {
  memberId: string;
  clusterId: string;
  /** '0' while the member knows no raft leader. */
  leaderId: string;
  revision: number;
  dbSize: number;
  dbSizeInUse: number;
  raftTerm: number;
  raftIndex: number;
  raftAppliedIndex: number;
  version: string;
  isLearner: boolean;
  /** Alarms and other errors the member reports about itself (NOSPACE, CORRUPT). */
  alarms: string[];
}

export async function readMemberStatus(member: EtcdMember, timeoutMs: number): Promise<MemberStatus> {
  const res = await callWithin('status', timeoutMs, (deadline) => member.maintenance.status({ deadline }));
  return {
    memberId: memberIdHex(res.header.member_id),
    clusterId: memberIdHex(res.header.cluster_id),
    leaderId: memberIdHex(res.leader),
    revision: Number(res.header.revision),
    dbSize: Number(res.dbSize),
    dbSizeInUse: Number(res.dbSizeInUse ?? res.dbSize),
    raftTerm: Number(res.raftTerm),
    raftIndex: Number(res.raftIndex),
    raftAppliedIndex: Number(res.raftAppliedIndex ?? res.raftIndex),
    version: res.version,
    isLearner: res.isLearner,
    alarms: [...(res.errors ?? [])],
  };
}

/**
 * A linearizable read of `key` answered by this member. etcd serves one only after a ReadIndex
 * round with a quorum, so it proves the member is in a cluster with quorum right now.
 */
export async function confirmQuorum(member: EtcdMember, key: string, timeoutMs: number): Promise<void> {
  await callWithin('linearizable read', timeoutMs, (deadline) => member.get(key).options({ deadline }).exec());
}
