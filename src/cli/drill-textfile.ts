/**
 * The restore drill's outcome as a node_exporter textfile-collector file (`snapshots verify
 * --metrics-textfile`): a drill runs from cron or a CronJob, not inside the sidecar, so no /metrics
 * of ours sees it; node_exporter's `--collector.textfile.directory` serves the file instead.
 */
import { writeFileDurably } from '../durable-file.js';
import type { DrillReport } from '../restore/drill.js';

const PREFIX = 'etcd_backup_sidecar_restore_drill_';

/** The drill's metrics in Prometheus' text format: name, help, value (absent when the drill got no value). */
export function drillMetrics(report: DrillReport, endedAt: Date): string {
  const r = report.restore;
  const metrics: [string, string, number | undefined][] = [
    ['success', '1 when the last restore drill passed, 0 when it failed', report.pass ? 1 : 0],
    ['timestamp_seconds', 'when the last restore drill ended', endedAt.getTime() / 1000],
    ['duration_seconds', 'how long the last restore drill took, restore and checks', report.durationMs / 1000],
    ['restore_seconds', "how long the last drill's restore took: an estimate of a real restore's time", r ? r.durationMs / 1000 : undefined],
    ['revision', 'the revision the last drill restored', r?.revision],
    ['deltas_applied', 'the delta snapshots the last drill applied after the full snapshot', r?.deltasApplied],
  ];
  return metrics
    .filter(([, , v]) => v !== undefined)
    .map(([name, help, v]) => `# HELP ${PREFIX}${name} ${help}\n# TYPE ${PREFIX}${name} gauge\n${PREFIX}${name} ${v}\n`)
    .join('');
}

/** Written whole or not at all (node_exporter must never read half a file), over the last drill's. */
export async function writeDrillTextfile(file: string, report: DrillReport, endedAt = new Date()): Promise<void> {
  await writeFileDurably(file, drillMetrics(report, endedAt));
}
