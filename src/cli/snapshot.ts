import type { Command } from 'commander';
import { load, postToSidecar, withSettings } from './common.js';

/** `snapshot full|delta`: asks the running sidecar for a snapshot now. */
export function snapshotCommand(root: Command): void {
  const snapshot = root.command('snapshot').description('ask the running sidecar (at --listen) to take a snapshot now');
  for (const kind of ['full', 'delta'] as const) {
    withSettings(snapshot.command(kind).description(`take a ${kind} snapshot now; prints its metadata as JSON`)).action(async (_o, cmd: Command) => {
      await postToSidecar(load(cmd, false).config, `/snapshot/${kind}`);
    });
  }
}
