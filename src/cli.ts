#!/usr/bin/env node
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import { ConfigError, SPECS, camelCase, envName, loadConfig, redactedConfig, type OptionSpec } from './config/index.js';
import { createLogger } from './logger.js';
import { startSidecar } from './sidecar.js';

const EXIT_CONFIG = 2;

function optionFor(spec: OptionSpec): Option {
  const arg = spec.kind === 'boolean' ? '[bool]' : '<value>';
  const extras = [spec.default !== undefined ? `default: ${spec.default}` : undefined, spec.required ? 'required' : undefined, `env ${envName(spec.flag)}`];
  const option = new Option(`--${spec.flag} ${arg}`, `${spec.description} (${extras.filter(Boolean).join('; ')})`);
  if (spec.choices) option.choices(spec.choices);
  return option;
}

/** The flags given on the command line, keyed by flag name, in the raw text the config parses. */
function givenFlags(cmd: Command): Record<string, string | undefined> {
  const opts = cmd.opts<Record<string, string | boolean | undefined>>();
  const flags: Record<string, string | undefined> = {};
  for (const spec of SPECS) {
    const v = opts[camelCase(spec.flag)];
    if (v !== undefined) flags[spec.flag] = v === true ? 'true' : String(v);
  }
  return flags;
}

function withSettings(cmd: Command): Command {
  for (const spec of SPECS) cmd.addOption(optionFor(spec));
  return cmd;
}

function load(cmd: Command, requireMember: boolean): ReturnType<typeof loadConfig> {
  try {
    return loadConfig({ flags: givenFlags(cmd), env: process.env, requireMember });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`etcd-backup-sidecar: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

export function program(): Command {
  const root = new Command('etcd-backup-sidecar')
    .description('Backs up, restores and initializes the etcd member it runs beside.')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG));

  withSettings(root.command('serve').description('run the sidecar: HTTP API, member health, backups')).action(async (_o, cmd: Command) => {
    const { config, warnings } = load(cmd, true);
    const log = createLogger(config.logLevel);
    for (const w of warnings) log.warn(w);
    let sidecar: Awaited<ReturnType<typeof startSidecar>>;
    try {
      sidecar = await startSidecar(config, log);
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'cannot start');
      process.exit(1);
    }
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'stopping');
      sidecar.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });

  withSettings(root.command('config').description('print the effective configuration as YAML (secrets redacted) and exit')).action((_o, cmd: Command) => {
    const { config, warnings } = load(cmd, true);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(stringify(redactedConfig(config)));
  });

  return root;
}

await program().parseAsync(process.argv);
