import { Counter, Gauge, type Registry } from 'prom-client';
import type { DefragObserver, MemberDefrag } from '../defrag/defragmenter.js';

const PREFIX = 'etcd_backup_sidecar_';

/** What the backup leader's defragmentation rounds did, per member, in the sidecar's registry. */
export class DefragMetrics implements DefragObserver {
  private readonly rounds: Counter<'member' | 'outcome'>;
  private readonly failures: Counter<'member'>;
  private readonly duration: Gauge<'member'>;
  private readonly reclaimed: Counter<'member'>;
  private readonly lastSuccess: Gauge<'member'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.rounds = new Counter({ name: PREFIX + 'defrag_total', help: 'member defragmentations, by outcome (defragmented or failed)', labelNames: ['member', 'outcome'], registers });
    this.failures = new Counter({
      name: PREFIX + 'defrag_failures_total',
      help: 'member defragmentations that failed or left the member unhealthy past --defrag-timeout',
      labelNames: ['member'],
      registers,
    });
    this.duration = new Gauge({
      name: PREFIX + 'defrag_duration_seconds',
      help: "how long the member's last defragmentation took, until it answered healthy again",
      labelNames: ['member'],
      registers,
    });
    this.reclaimed = new Counter({ name: PREFIX + 'defrag_reclaimed_bytes_total', help: 'bytes of db file given back by defragmentation', labelNames: ['member'], registers });
    this.lastSuccess = new Gauge({ name: PREFIX + 'defrag_last_success_timestamp_seconds', help: "when the member's last successful defragmentation ended", labelNames: ['member'], registers });
  }

  memberDefragmented(m: MemberDefrag): void {
    const member = { member: m.name };
    this.rounds.inc({ ...member, outcome: m.outcome });
    if (m.durationMs !== undefined) this.duration.set(member, m.durationMs / 1000);
    if (m.outcome === 'failed') {
      this.failures.inc(member);
      return;
    }
    if (m.dbSizeBefore !== undefined && m.dbSizeAfter !== undefined) this.reclaimed.inc(member, Math.max(0, m.dbSizeBefore - m.dbSizeAfter));
    this.lastSuccess.set(member, Date.now() / 1000);
  }
}
