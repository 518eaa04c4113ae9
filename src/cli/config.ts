import type { Command } from 'commander';
import { stringify } from 'yaml';
import { redactedConfig } from '../config/index.js';
import { load, withSettings } from './common.js';

/** `config`: the effective configuration, secrets redacted. */
export function configCommand(root: Command): void {
  withSettings(root.command('config').description('print the effective configuration as YAML (secrets redacted) and exit')).action((_o, cmd: Command) => {
    const { config, warnings } = load(cmd, true);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(stringify(redactedConfig(config)));
  });
}
