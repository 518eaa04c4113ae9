import type { IMember } from 'etcd3';

/** A cluster member as the member list reports it, with etcd's hex IDs (as `etcdctl member list`). */
export interface Member {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
  /** etcd lists a member added but never started with an empty name and no client URLs. */
  started: boolean;
}

/** etcd3 returns uint64 IDs as decimal strings; operators and etcdctl speak hex. */
export function memberIdHex(decimal: string): string {
  if (decimal === '' || decimal === '0') return '0';
  return BigInt(decimal).toString(16);
}

export function toMember(m: IMember): Member {
  return {
    id: memberIdHex(m.ID),
    name: m.name,
    peerURLs: [...m.peerURLs],
    clientURLs: [...m.clientURLs],
    isLearner: m.isLearner,
    started: m.name !== '' && m.clientURLs.length > 0,
  };
}

/**
 * The client URLs that may serve this client's requests: started voting members only. A learner
 * answers most RPCs with "rpc not supported for learner" and an unstarted member answers nothing
 * (seed 002: clientv3's auto-sync once put learners in the rotation).
 */
export function rotationFromMembers(members: readonly Member[]): string[] {
  const urls = members.filter((m) => m.started && !m.isLearner).flatMap((m) => m.clientURLs);
  return [...new Set(urls)].sort();
}
