import { Option, type Command } from 'commander';
import { load, postToSidecar, withSettings } from './common.js';

/** `defrag`: asks the running sidecar for a defragmentation round now (the backup leader runs it). */
export function defragCommand(root: Command): void {
  withSettings(
    root.command('defrag').description("ask the running sidecar (at --listen) for a defragmentation round now: followers one at a time, the raft leader last; prints the round's report as JSON"),
  )
    .addOption(new Option('--member <name>', 'defragment only this member'))
    .action(async (opts: { member?: string }, cmd: Command) => {
      await postToSidecar(load(cmd, false).config, `/defrag${opts.member ? `?member=${encodeURIComponent(opts.member)}` : ''}`);
    });
}
