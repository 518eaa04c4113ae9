import { Option, type Command } from 'commander';
import { createLogger } from '../logger.js';
import { copySnapshots } from '../snapshot/copy.js';
import { openStore } from '../snapstore/index.js';
import { EXIT_CONFIG, fail, load, withSettings } from './common.js';

/** `copy`: backups from one store to another, checked on both sides, resumable. */
export function copyCommand(root: Command): void {
  withSettings(
    root
      .command('copy')
      .description(
        'copy full and delta snapshots with their metadata from --from to --to, checking every object on both sides and skipping what the target holds (run it again to resume); prints a JSON report',
      ),
  )
    .addOption(new Option('--from <store>', 'source store URL (file://, s3://, gs://); credentials from the usual store settings').makeOptionMandatory())
    .addOption(new Option('--to <store>', 'target store URL').makeOptionMandatory())
    .addOption(new Option('--chains <n>', 'only the newest N full snapshots and the deltas after each'))
    .addOption(new Option('--since <rfc3339>', 'only snapshots created at or after this time'))
    .action(async (opts: { from: string; to: string; chains?: string; since?: string }, cmd: Command) => {
      const { config } = load(cmd, false);
      const chains = opts.chains === undefined ? undefined : Number(opts.chains);
      if (chains !== undefined && (!Number.isSafeInteger(chains) || chains < 1)) fail(`--chains ${opts.chains} is not a positive whole number`, EXIT_CONFIG);
      const since = opts.since === undefined ? undefined : new Date(opts.since);
      if (opts.since !== undefined && (!/^\d{4}-\d{2}-\d{2}T/.test(opts.since) || Number.isNaN(since?.getTime()))) fail(`--since ${opts.since} is not an RFC 3339 time`, EXIT_CONFIG);
      const log = createLogger(config.logLevel, process.stderr);
      // --store-retention locks what is written: the target's copies; the source is only read.
      const open = (flag: string, url: string): ReturnType<typeof openStore> =>
        openStore({ ...config, store: url, storeRetention: flag === 'from' ? 0 : config.storeRetention }).catch((err: unknown) => fail(`--${flag} ${url}: ${(err as Error).message}`, EXIT_CONFIG));
      const from = await open('from', opts.from);
      const to = await open('to', opts.to);
      try {
        const report = await copySnapshots(from, to, { log, storeRetentionMs: config.storeRetention, ...(chains !== undefined ? { chains } : {}), ...(since ? { since } : {}) });
        process.stdout.write(`${JSON.stringify({ ...report, copied: report.copied.length, copiedObjects: report.copied, skipped: report.skipped.length })}\n`);
      } catch (err) {
        fail(`copy failed: ${(err as Error).message}`, 1);
      } finally {
        await Promise.all([from.close(), to.close()]);
      }
    });
}
