import { Option, type Command } from 'commander';
import { tmpdir } from 'node:os';
import { createLogger } from '../logger.js';
import { restoreDrill } from '../restore/drill.js';
import { replayRatesFile } from '../restore/replay-rates.js';
import { openStore } from '../snapstore/index.js';
import { load, withSettings } from './common.js';
import { progressBar } from './progress.js';

/** `snapshots verify`: the restore drill, exit 1 on failure. */
export function snapshotsVerifyCommand(snapshots: Command): void {
  withSettings(snapshots.command('verify').description('restore drill: restore the latest chain into a scratch dir, start it, check its revision and key count against the chain; exit 1 on failure'))
    .addOption(new Option('--json', 'print the report as JSON'))
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { config } = load(cmd, false);
      const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
      const store = await openStore(config);
      const bar = progressBar();
      try {
        const report = await restoreDrill({ store, scratchDir: config.restoreScratchDir || tmpdir(), log, onProgress: bar.update, replayWindow: config.restoreReplayWindow, ...(config.dataDir ? { replayRatesFile: replayRatesFile(config.dataDir, config.name) } : {}), ...(config.etcdBinDir ? { etcdBinDir: config.etcdBinDir } : {}) });
        bar.done();
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          const r = report.restore;
          process.stdout.write(`${report.pass ? 'PASS' : 'FAIL'}: ${r ? `${r.fullSnapshot} + ${r.deltasApplied} deltas (${r.eventsApplied} events) restored to revision ${r.revision} in ${r.durationMs}ms; ` : ''}member at revision ${report.revision ?? '-'}, ${report.keys ?? '-'} keys (chain says ${report.expectedKeys ?? '-'})\n`);
          for (const p of report.problems) process.stdout.write(`  problem: ${p}\n`);
        }
        process.exitCode = report.pass ? 0 : 1;
      } finally {
        await store.close();
      }
    });
}
