// When a member whose etcd runs must take part in a recovery: its cluster lost quorum for good
// (two of three members came back without their data), and the others wait for a recovery that
// must start from this member's copy. Its etcd cannot help any more; only its data can. Pure, so the
// rule is tested without processes; the sidecar asks it at every leader check.

import type { SeenHeartbeat } from '../cluster/heartbeat-ages.js';

export interface RejoinFacts {
  self: string;
  /** No initialization runs now (it finished, or this sidecar process never ran one). */
  idle: boolean;
  /** This member's etcd answers its sidecar. */
  etcdUp: boolean;
  /** Since when (ms, monotonic) its etcd has answered without confirming a leader with quorum; undefined while it has quorum. */
  noQuorumSinceMs: number | undefined;
  nowMs: number;
  /** The cluster this member's etcd belongs to, as it last answered. */
  clusterId?: string;
  heartbeats: readonly SeenHeartbeat[];
  ttlMs: number;
}

/** The reason to initialize again, or undefined. */
export function rejoinRecovery(f: RejoinFacts): string | undefined {
  if (!f.idle || !f.etcdUp || f.noQuorumSinceMs === undefined) return undefined;
  // A leader election or a slow peer must never stop a member: only a quorum gone for a whole TTL.
  if (f.nowMs - f.noQuorumSinceMs < f.ttlMs) return undefined;
  const live = f.heartbeats.filter((h) => h.name !== f.self && h.ageMs <= f.ttlMs);
  const since = `this member's etcd has had no quorum for ${Math.round((f.nowMs - f.noQuorumSinceMs) / 1000)} s`;
  const lost = live.filter((h) => h.waiting?.dataLost === true).map((h) => h.name);
  if (lost.length > 0) return `${since} and ${lost.join(', ')} lost ${lost.length > 1 ? 'their' : 'its'} data: the cluster needs a recovery, which this member's data must take part in`;
  // Another cluster has quorum (a recovery went on without this member, which came back after the
  // holder had decided): this member joins it, as any member its cluster does not list.
  const elsewhere = f.clusterId === undefined ? undefined : live.find((h) => h.inQuorum === true && h.etcdUp && h.clusterId !== undefined && h.clusterId !== f.clusterId);
  if (elsewhere) return `${since} while ${elsewhere.name} is in cluster ${elsewhere.clusterId}, which has quorum: this member joins that cluster`;
  return undefined;
}
