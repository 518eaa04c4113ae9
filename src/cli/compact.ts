import type { Command } from 'commander';
import { tmpdir } from 'node:os';
import { createLogger } from '../logger.js';
import { compactChain, compactOptionsFromConfig, CompactRefusedError } from '../restore/compact.js';
import { openStore } from '../snapstore/index.js';
import { fail, load, withSettings } from './common.js';

/** `compact`: the latest chain as one new full snapshot, built offline (etcd and the sidecar may be down). */
export function compactCommand(root: Command): void {
  withSettings(
    root
      .command('compact')
      .description(
        "restore the latest chain in --store into a scratch temporary etcd, snapshot it and upload that as a full snapshot at the chain's last revision (with the chain's cluster ID): later restores replay nothing, and retention collects the old deltas; prints the new snapshot as JSON",
      ),
  ).action(async (_o, cmd: Command) => {
    const { config } = load(cmd, false);
    const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
    const store = await openStore(config);
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort());
    process.once('SIGTERM', () => abort.abort());
    try {
      const full = await compactChain({ store, log, signal: abort.signal, ...compactOptionsFromConfig(config, tmpdir()) });
      process.stdout.write(`${JSON.stringify(full)}\n`);
    } catch (err) {
      if (err instanceof CompactRefusedError) fail(`nothing compacted: ${err.message}`, 1);
      fail(`compaction failed: ${(err as Error).message}`, 1);
    } finally {
      await store.close();
    }
  });
}
