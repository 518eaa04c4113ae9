/**
 * Questions asked of one member about itself: its status and whether it can serve a linearizable
 * read. Both are bounded by one deadline whatever the member does: the grpc deadline bounds the call,
 * withDeadline also bounds etcd3's token exchange with auth on, which the grpc deadline does not.
 */
import { withDeadline } from '../resilience.js';
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

/** Grace over the grpc deadline, so that the member's own "deadline exceeded" is what gets reported. */
const DEADLINE_GRACE_MS = 100;

export async function readMemberStatus(member: EtcdMember, timeoutMs: number): Promise<MemberStatus> {
  const res = await withDeadline('status', timeoutMs + DEADLINE_GRACE_MS, () => member.maintenance.status({ deadline: Date.now() + timeoutMs }));
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
  await withDeadline('linearizable read', timeoutMs, () =>
    member
      .get(key)
      .options({ deadline: Date.now() + timeoutMs })
      .exec(),
  );
}
