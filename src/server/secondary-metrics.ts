import { Counter, Gauge, type Registry } from 'prom-client';
import type { SecondarySyncObserver, SecondarySyncRun } from '../snapshot/secondary-sync.js';

const PREFIX = 'etcd_backup_sidecar_';

/** What the backup leader's syncs of the --secondary-store did, in the sidecar's registry. */
export class SecondarySyncMetrics implements SecondarySyncObserver {
  private readonly syncs: Counter<'outcome'>;
  private readonly copiedBytes: Counter;
  private readonly lastSuccess: Gauge;
  private readonly failingSince: Gauge;
  private firstFailure: number | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    this.syncs = new Counter({ name: PREFIX + 'secondary_store_syncs_total', help: 'syncs of the --secondary-store, by outcome (synced or failed)', labelNames: ['outcome'], registers });
    this.copiedBytes = new Counter({ name: PREFIX + 'secondary_store_copied_bytes_total', help: 'bytes copied to the --secondary-store', registers });
    this.lastSuccess = new Gauge({
      name: PREFIX + 'secondary_store_last_success_timestamp_seconds',
      help: 'when the last sync of the --secondary-store ended with it holding every snapshot',
      registers,
    });
    this.failingSince = new Gauge({
      name: PREFIX + 'secondary_store_failing_since_timestamp_seconds',
      help: 'when the syncs of the --secondary-store started failing; 0 while they succeed',
      registers,
    });
    for (const outcome of ['synced', 'failed']) this.syncs.inc({ outcome }, 0);
  }

  synced(run: SecondarySyncRun): void {
    this.syncs.inc({ outcome: 'synced' });
    this.copiedBytes.inc(run.bytes);
    this.lastSuccess.set(Date.now() / 1000);
    this.firstFailure = undefined;
    this.failingSince.set(0);
  }

  failed(): void {
    this.syncs.inc({ outcome: 'failed' });
    this.firstFailure ??= Date.now() / 1000;
    this.failingSince.set(this.firstFailure);
  }
}
