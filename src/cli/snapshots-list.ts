import { Option, type Command } from 'commander';
import { restorableChain } from '../snapshot/chain.js';
import { newestFirst } from '../snapshot/listing.js';
import { listSnapshots } from '../snapshot/snapshotter.js';
import { openStore } from '../snapstore/index.js';
import { load, withSettings } from './common.js';

/** `snapshots list`: the store's snapshots and the latest chain, with etcd and the sidecar down. */
export function snapshotsListCommand(snapshots: Command): void {
  withSettings(snapshots.command('list').description('every snapshot in --store, newest first, and whether the latest chain is contiguous'))
    .addOption(new Option('--json', 'print JSON instead of a table'))
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { config } = load(cmd, false);
      const store = await openStore(config);
      try {
        const listing = (await listSnapshots(store)).sort(newestFirst);
        const chain = restorableChain(listing);
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ snapshots: listing, chain: { full: chain.full?.name ?? null, deltas: chain.links.length, lastRevision: chain.lastRevision, contiguous: chain.contiguous, gaps: chain.gaps } }, null, 2)}\n`,
          );
          return;
        }
        const rows = listing.map((s) => [s.kind, String(s.startRevision), String(s.lastRevision), s.createdAt.toISOString(), s.name]);
        const header = ['KIND', 'START', 'LAST', 'CREATED', 'NAME'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
        for (const r of [header, ...rows])
          process.stdout.write(
            `${r
              .map((c, i) => c.padEnd(widths[i] as number))
              .join('  ')
              .trimEnd()}\n`,
          );
        const state = !chain.full ? 'no full snapshot' : chain.contiguous ? 'contiguous' : `GAPS: ${chain.gaps.map((g) => `${g.from}-${g.to}`).join(', ')}`;
        process.stdout.write(`\nlatest chain: ${chain.full?.name ?? '-'} + ${chain.links.length} deltas, restores to revision ${chain.lastRevision} (${state})\n`);
      } finally {
        await store.close();
      }
    });
}
