import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ClusterStatus } from '../etcd/status.js';

const PREFIX = 'etcd_backup_sidecar_';

/** The sidecar's Prometheus registry: process metrics plus what it knows of each member. */
export class Metrics {
  readonly registry = new Registry();
  private readonly memberHealthy: Gauge<'member' | 'member_id'>;
  private readonly memberReachable: Gauge<'member' | 'member_id'>;
  private readonly memberIsLeader: Gauge<'member' | 'member_id'>;
  private readonly memberIsLearner: Gauge<'member' | 'member_id'>;
  private readonly memberDbSize: Gauge<'member' | 'member_id'>;
  private readonly memberRevision: Gauge<'member' | 'member_id'>;
  private readonly memberProbeSeconds: Gauge<'member' | 'member_id'>;
  private readonly clusterHasQuorum: Gauge;
  private readonly lastCheck: Gauge;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const labels = ['member', 'member_id'] as const;
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> =>
      new Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
    this.memberHealthy = gauge('member_healthy', '1 when the member answered its status probe, knows a leader and reports no alarm', labels);
    this.memberReachable = gauge('member_reachable', '1 when the member answered its status probe before the deadline', labels);
    this.memberIsLeader = gauge('member_is_leader', '1 for the etcd raft leader', labels);
    this.memberIsLearner = gauge('member_is_learner', '1 for a learner (non-voting) member', labels);
    this.memberDbSize = gauge('member_db_size_bytes', 'physically allocated size of the member database', labels);
    this.memberRevision = gauge('member_revision', 'latest revision the member reported', labels);
    this.memberProbeSeconds = gauge('member_probe_seconds', 'how long the last status probe of the member took', labels);
    this.clusterHasQuorum = gauge('cluster_has_quorum', '1 when more than half of the voting members are healthy', []);
    this.lastCheck = gauge('member_check_timestamp_seconds', 'when the member health was last checked', []);
  }

  recordClusterStatus(status: ClusterStatus): void {
    for (const g of [this.memberHealthy, this.memberReachable, this.memberIsLeader, this.memberIsLearner, this.memberDbSize, this.memberRevision, this.memberProbeSeconds]) g.reset();
    for (const m of status.members) {
      const labels = { member: m.name || m.clientURLs[0] || m.id, member_id: m.id };
      this.memberHealthy.set(labels, m.healthy ? 1 : 0);
      this.memberReachable.set(labels, m.status?.reachable ? 1 : 0);
      this.memberIsLeader.set(labels, m.isLeader ? 1 : 0);
      this.memberIsLearner.set(labels, m.isLearner ? 1 : 0);
      if (m.status?.dbSize !== undefined) this.memberDbSize.set(labels, m.status.dbSize);
      if (m.status?.revision !== undefined) this.memberRevision.set(labels, m.status.revision);
      if (m.status) this.memberProbeSeconds.set(labels, m.status.latencyMs / 1000);
    }
    this.clusterHasQuorum.set(status.hasQuorum ? 1 : 0);
    this.lastCheck.set(Date.parse(status.checkedAt) / 1000);
  }
}
