import { Option, type Command } from 'commander';
import { createLogger } from '../logger.js';
import { RestoreError, restore, restoreOptionsFromConfig } from '../restore/index.js';
import { openStore } from '../snapstore/index.js';
import { EXIT_CONFIG, fail, load, withSettings } from './common.js';
import { progressBar } from './progress.js';

/** `restore`: a data dir from the backups. */
export function restoreCommand(root: Command): void {
  withSettings(root.command('restore').description('restore --data-dir from the backups in --store: the latest chain, or up to --to-revision / --to-time'))
    .addOption(new Option('--to-revision <n>', 'stop the replay at this revision'))
    .addOption(new Option('--to-time <rfc3339>', 'stop the replay at the last revision written at or before this time'))
    .addOption(new Option('--replace-existing', 'replace a non-empty --data-dir (atomically, once the restore is complete)'))
    .addOption(new Option('--expect-cluster-id <hex>', 'refuse backups of another cluster'))
    .action(async (opts: { toRevision?: string; toTime?: string; replaceExisting?: boolean; expectClusterId?: string }, cmd: Command) => {
      const { config } = load(cmd, 'member-identity');
      const log = createLogger(config.logLevel);
      let toRevision: number | undefined;
      let toTime: Date | undefined;
      if (opts.toRevision !== undefined) {
        toRevision = Number(opts.toRevision);
        if (!Number.isSafeInteger(toRevision) || toRevision < 1) fail(`--to-revision ${opts.toRevision} is not a revision (a positive integer)`, EXIT_CONFIG);
      }
      if (opts.toTime !== undefined) {
        toTime = new Date(opts.toTime);
        if (!/^\d{4}-\d{2}-\d{2}T/.test(opts.toTime) || Number.isNaN(toTime.getTime())) fail(`--to-time ${opts.toTime} is not an RFC 3339 time`, EXIT_CONFIG);
      }
      const store = await openStore(config);
      const bar = progressBar();
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      try {
        const result = await restore({
          store,
          dataDir: config.dataDir,
          replaceExisting: opts.replaceExisting ?? false,
          ...restoreOptionsFromConfig(config, config.initialCluster),
          ...(toRevision !== undefined ? { toRevision } : {}),
          ...(toTime !== undefined ? { toTime } : {}),
          ...(opts.expectClusterId ? { expectClusterId: opts.expectClusterId } : {}),
          log,
          onProgress: bar.update,
          signal: abort.signal,
        });
        bar.done();
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } catch (err) {
        bar.done();
        if (err instanceof RestoreError) fail(`restore failed (${err.code}): ${err.message}`, 1);
        throw err;
      } finally {
        await store.close();
      }
    });
}
