#!/usr/bin/env node
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import { ConfigError, SPECS, camelCase, envName, loadConfig, loadSecrets, redactedConfig, redactor, type OptionSpec } from './config/index.js';
import { createLogger } from './logger.js';
import { startSidecar } from './sidecar.js';
import { restorableChain } from './snapshot/chain.js';
import { listSnapshots } from './snapshot/snapshotter.js';
import { openStore } from './snapstore/index.js';

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

function secretsOrExit(config: Parameters<typeof loadSecrets>[0]): ReturnType<typeof loadSecrets> {
  try {
    return loadSecrets(config);
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
    const secrets = secretsOrExit(config);
    const log = createLogger(config.logLevel, undefined, redactor(secrets.values));
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

  const snapshot = root.command('snapshot').description("ask the running sidecar (at --listen) to take a snapshot now");
  for (const kind of ['full', 'delta'] as const) {
    withSettings(snapshot.command(kind).description(`take a ${kind} snapshot now; prints its metadata as JSON`)).action(async (_o, cmd: Command) => {
      const { config } = load(cmd, false);
      const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
      const scheme = config.serverCert !== '' ? 'https' : 'http';
      const url = `${scheme}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${config.listen.port}/snapshot/${kind}`;
      const token = secretsOrExit(config).apiToken;
      let res: Response;
      try {
        res = await fetch(url, { method: 'POST', ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
      } catch (err) {
        process.stderr.write(`etcd-backup-sidecar: no sidecar answers at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}\n`);
        process.exit(1);
      }
      const body = await res.text();
      if (!res.ok) {
        process.stderr.write(`etcd-backup-sidecar: ${url} answered ${res.status}: ${body}\n`);
        process.exit(1);
      }
      process.stdout.write(`${body}\n`);
    });
  }

  const snapshots = root.command('snapshots').description('read the snapshots in the store (works while etcd and the sidecar are down)');
  withSettings(snapshots.command('list').description('every snapshot in --store, newest first, and whether the latest chain is contiguous'))
    .addOption(new Option('--json', 'print JSON instead of a table'))
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { config } = load(cmd, false);
      const store = await openStore(config);
      try {
        const listing = (await listSnapshots(store)).sort((a, b) => b.lastRevision - a.lastRevision || (a.name < b.name ? 1 : -1));
        const chain = restorableChain(listing);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ snapshots: listing, chain: { full: chain.full?.name ?? null, deltas: chain.links.length, lastRevision: chain.lastRevision, contiguous: chain.contiguous, gaps: chain.gaps } }, null, 2)}\n`);
          return;
        }
        const rows = listing.map((s) => [s.kind, String(s.startRevision), String(s.lastRevision), s.createdAt.toISOString(), s.name]);
        const header = ['KIND', 'START', 'LAST', 'CREATED', 'NAME'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
        for (const r of [header, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()}\n`);
        const state = !chain.full ? 'no full snapshot' : chain.contiguous ? 'contiguous' : `GAPS: ${chain.gaps.map((g) => `${g.from}-${g.to}`).join(', ')}`;
        process.stdout.write(`\nlatest chain: ${chain.full?.name ?? '-'} + ${chain.links.length} deltas, restores to revision ${chain.lastRevision} (${state})\n`);
      } finally {
        await store.close();
      }
    });

  return root;
}

await program().parseAsync(process.argv);
