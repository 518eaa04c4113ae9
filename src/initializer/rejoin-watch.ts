import type { BackupLeadership } from '../cluster/backup-leadership.js';
import type { Config } from '../config/index.js';
import type { Initializer } from './initializer.js';
import { rejoinRecovery } from './rejoin.js';

/**
 * Initializes again when this member's etcd runs without quorum for a TTL while another member
 * waits for a recovery (src/initializer/rejoin.ts): the launcher then stops etcd and its data takes
 * part in the recovery.
 */
export function watchForRecovery(config: Config, cluster: BackupLeadership, initializer: Initializer): NodeJS.Timeout {
  let noQuorumSince: number | undefined;
  const timer = setInterval(() => {
    const now = performance.now();
    const { roles } = cluster;
    if (roles.etcdUp && roles.role === 'unknown') noQuorumSince ??= now;
    else noQuorumSince = undefined;
    const state = initializer.status().state;
    const why = rejoinRecovery({
      self: config.name,
      idle: state === 'Successful' || state === 'New',
      etcdUp: roles.etcdUp,
      noQuorumSinceMs: noQuorumSince,
      nowMs: now,
      ...(roles.facts?.clusterId ? { clusterId: roles.facts.clusterId } : {}),
      heartbeats: cluster.directory.latest(),
      ttlMs: config.heartbeatTtl,
    });
    if (why) {
      noQuorumSince = undefined;
      initializer.reinitialize(why);
    }
  }, config.leaderCheckPeriod);
  timer.unref();
  return timer;
}
