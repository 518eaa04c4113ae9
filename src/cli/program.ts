/** The command line: one file per command, each registering itself on the root command. */
import { Command } from 'commander';
import { EXIT_CONFIG } from './common.js';
import { compactCommand } from './compact.js';
import { configCommand } from './config.js';
import { copyCommand } from './copy.js';
import { defragCommand } from './defrag.js';
import { initializeCommand } from './initialize.js';
import { restoreCommand } from './restore.js';
import { runEtcdCommand } from './run-etcd.js';
import { serveCommand } from './serve.js';
import { snapshotCommand } from './snapshot.js';
import { snapshotsListCommand } from './snapshots-list.js';
import { snapshotsVerifyCommand } from './snapshots-verify.js';

export function program(): Command {
  const root = new Command('etcd-backup-sidecar')
    .description('Backs up, restores and initializes the etcd member it runs beside.')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG));
  serveCommand(root);
  configCommand(root);
  snapshotCommand(root);
  const snapshots = root.command('snapshots').description('read the snapshots in the store (works while etcd and the sidecar are down)');
  snapshotsListCommand(snapshots);
  snapshotsVerifyCommand(snapshots);
  copyCommand(root);
  defragCommand(root);
  restoreCommand(root);
  compactCommand(root);
  initializeCommand(root);
  runEtcdCommand(root);
  return root;
}
