import { Option, type Command } from 'commander';
import { tmpdir } from 'node:os';
import { createLogger } from '../logger.js';
import { restoreDrill, type DrillReport } from '../restore/drill.js';
import { replayRatesFile } from '../restore/replay-rates.js';
import { openStore } from '../snapstore/index.js';
import { load, withSettings } from './common.js';
import { progressBar } from './progress.js';
import { writeDrillTextfile } from './drill-textfile.js';

/** `snapshots verify`: the restore drill, exit 1 on failure. */
export function snapshotsVerifyCommand(snapshots: Command): void {
  withSettings(snapshots.command('verify').description('restore drill: restore the latest chain into a scratch dir, start it, check its revision and key count against the chain; exit 1 on failure'))
    .addOption(new Option('--json', 'print the report as JSON'))
    .addOption(new Option('--metrics-textfile <file>', "also write the outcome as Prometheus metrics to this file (a .prom file in node_exporter's --collector.textfile.directory), replaced whole"))
    .action(async (opts: { json?: boolean; metricsTextfile?: string }, cmd: Command) => {
      const { config } = load(cmd, false);
      const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
      const store = await openStore(config);
      const bar = progressBar();
      try {
        const started = performance.now();
        let report: DrillReport;
        try {
          report = await restoreDrill({
            store,
            scratchDir: config.restoreScratchDir || tmpdir(),
            log,
            onProgress: bar.update,
            replayWindow: config.restoreReplayWindow,
            ...(config.dataDir ? { replayRatesFile: replayRatesFile(config.dataDir, config.name) } : {}),
            ...(config.etcdBinDir ? { etcdBinDir: config.etcdBinDir } : {}),
            ...(config.etcdVersion ? { etcdVersion: config.etcdVersion } : {}),
          });
        } catch (err) {
          // A drill that could not even run failed too, and the alert on the file must say so.
          if (opts.metricsTextfile) await writeDrillTextfile(opts.metricsTextfile, { pass: false, problems: [(err as Error).message], durationMs: performance.now() - started });
          throw err;
        }
        bar.done();
        if (opts.metricsTextfile) await writeDrillTextfile(opts.metricsTextfile, report);
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          const r = report.restore;
          process.stdout.write(
            `${report.pass ? 'PASS' : 'FAIL'}: ${r ? `${r.fullSnapshot} + ${r.deltasApplied} deltas (${r.eventsApplied} events) restored to revision ${r.revision} in ${r.durationMs}ms; ` : ''}member at revision ${report.revision ?? '-'}, ${report.keys ?? '-'} keys (chain says ${report.expectedKeys ?? '-'})\n`,
          );
          for (const p of report.problems) process.stdout.write(`  problem: ${p}\n`);
        }
        process.exitCode = report.pass ? 0 : 1;
      } finally {
        await store.close();
      }
    });
}
