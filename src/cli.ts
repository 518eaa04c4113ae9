#!/usr/bin/env node
import { Command, Option } from 'commander';
import { tmpdir } from 'node:os';
import { stringify } from 'yaml';
import { ConfigError, SPECS, camelCase, envName, loadConfig, loadSecrets, redactedConfig, redactor, type Config, type OptionSpec } from './config/index.js';
import { createLogger } from './logger.js';
import { startSidecar } from './sidecar.js';
import { restorableChain } from './snapshot/chain.js';
import { listSnapshots } from './snapshot/snapshotter.js';
import { openStore } from './snapstore/index.js';
import { RestoreError, restore, restoreOptionsFromConfig, type RestoreProgress } from './restore/index.js';
import { restoreDrill } from './restore/drill.js';
import { writeFileSync } from 'node:fs';
import { createEtcdClient, etcdAccessFromConfig } from './etcd/client.js';
import { HeartbeatAges } from './cluster/heartbeat-ages.js';
import { HeartbeatWriter } from './cluster/heartbeat.js';
import { Initializer } from './initializer/act.js';
import { runEtcd } from './launcher/run-etcd.js';
import { etcdTools } from './etcd/tools.js';

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
      const url = `${localSidecarURL(config)}/snapshot/${kind}`;
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

  withSettings(snapshots.command('verify').description('restore drill: restore the latest chain into a scratch dir, start it, check its revision and key count against the chain; exit 1 on failure'))
    .addOption(new Option('--json', 'print the report as JSON'))
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { config } = load(cmd, false);
      const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
      const store = await openStore(config);
      const bar = progressBar();
      try {
        const report = await restoreDrill({ store, scratchDir: config.restoreScratchDir || tmpdir(), log, onProgress: bar.update, replayWindow: config.restoreReplayWindow, ...(config.etcdBinDir ? { etcdBinDir: config.etcdBinDir } : {}) });
        bar.done();
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          const r = report.restore;
          process.stdout.write(`${report.pass ? 'PASS' : 'FAIL'}: ${r ? `${r.fullSnapshot} + ${r.deltasApplied} deltas (${r.eventsApplied} events) restored to revision ${r.revision} in ${r.durationMs}ms; ` : ''}member at revision ${report.revision ?? '-'}, ${report.keys ?? '-'} keys (chain says ${report.expectedKeys ?? '-'})\n`);
          for (const p of report.problems) process.stdout.write(`  problem: ${p}\n`);
        }
        process.exitCode = report.pass ? 0 : 1;
      } finally {
        await store.close();
      }
    });

  withSettings(root.command('restore').description('restore --data-dir from the backups in --store: the latest chain, or up to --to-revision / --to-time'))
    .addOption(new Option('--to-revision <n>', 'stop the replay at this revision'))
    .addOption(new Option('--to-time <rfc3339>', 'stop the replay at the last revision written at or before this time'))
    .addOption(new Option('--replace-existing', 'replace a non-empty --data-dir (atomically, once the restore is complete)'))
    .addOption(new Option('--expect-cluster-id <hex>', 'refuse backups of another cluster'))
    .action(async (opts: { toRevision?: string; toTime?: string; replaceExisting?: boolean; expectClusterId?: string }, cmd: Command) => {
      const { config } = load(cmd, true);
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

  withSettings(root.command('initialize').description("decide how this member starts (as POST /initialize does) and write etcd's config file; exit 0 on success"))
    .addOption(new Option('--etcd-config-out <file>', "where to write etcd's config (default: standard output)"))
    .action(async (opts: { etcdConfigOut?: string }, cmd: Command) => {
      const { config } = load(cmd, true);
      const log = createLogger(config.logLevel, process.stderr);
      const store = await openStore(config);
      const etcd = await createEtcdClient(etcdAccessFromConfig(config), log.child({ part: 'etcd' }));
      // Without `serve` there is no role loop: the heartbeat says only that etcd is not up yet, and
      // carries the member's last recorded progress forward.
      const heartbeat = new HeartbeatWriter(store, () => ({ name: config.name, role: 'unknown', apiURL: '', etcdUp: false }), { periodMs: config.heartbeatPeriod, log });
      const initializer = new Initializer({ config, etcd, store, log: log.child({ part: 'initializer' }), heartbeat, ages: new HeartbeatAges() });
      const stop = (): void => initializer.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      heartbeat.start();
      try {
        const status = await initializer.start();
        if (status.state !== 'Successful') fail(`initialization failed: ${status.error ?? status.reason ?? 'unknown'}`, 1);
        const yaml = initializer.etcdConfig() ?? '';
        if (opts.etcdConfigOut) writeFileSync(opts.etcdConfigOut, yaml);
        else process.stdout.write(yaml);
        process.stderr.write(`etcd-backup-sidecar: ${status.decision}: ${status.reason}\n`);
      } finally {
        await heartbeat.stop();
        etcd.close();
        await store.close();
      }
    });

  withSettings(root.command('run-etcd').description("run etcd as the sidecar at --listen decides: POST /initialize, start etcd with GET /config written to --etcd-config-file, stop and start it again when the sidecar asks (a recovery needs this member's data); the etcd container's command"))
    .addOption(new Option('--poll <ms>', 'how often the sidecar is asked whether etcd must stop').default('2000'))
    .action(async (opts: { poll: string }, cmd: Command) => {
      const { config } = load(cmd, false);
      const log = createLogger(config.logLevel, process.stderr).child({ part: 'run-etcd' });
      if (!config.etcdConfigFile) fail('run-etcd needs --etcd-config-file: where etcd reads its config', 2);
      const abort = new AbortController();
      // etcd gets SIGTERM from the launcher, never from the container runtime directly.
      process.once('SIGTERM', () => abort.abort());
      process.once('SIGINT', () => abort.abort());
      const code = await runEtcd({
        sidecarURL: localSidecarURL(config),
        ...(secretsOrExit(config).apiToken ? { token: secretsOrExit(config).apiToken as string } : {}),
        configFile: config.etcdConfigFile,
        etcdBinary: etcdTools(config.etcdBinDir || undefined).etcd,
        pollMs: Number(opts.poll),
        stopGraceMs: 30_000,
        log,
        signal: abort.signal,
      }).catch((err: Error) => (abort.signal.aborted ? 0 : fail(err.message, 1)));
      process.exit(code);
    });

  return root;
}

/** The sidecar this host runs, as its own --listen says (a wildcard bind is reached on loopback). */
function localSidecarURL(config: Config): string {
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const scheme = config.serverCert !== '' ? 'https' : 'http';
  return `${scheme}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${config.listen.port}`;
}

function fail(message: string, code: number): never {
  process.stderr.write(`etcd-backup-sidecar: ${message}\n`);
  process.exit(code);
}

/** A one-line progress bar on a terminal's stderr; nothing when stderr is not a terminal (logs carry the progress). */
function progressBar(): { update: (p: RestoreProgress) => void; done: () => void } {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  let last = 0;
  return {
    update: (p) => {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && p.phase === 'replaying') return;
      last = now;
      const span = Math.max(1, p.targetRevision - p.fullRevision);
      const frac = p.phase === 'done' ? 1 : p.phase === 'replaying' || p.phase === 'finalizing' ? Math.min(1, (p.revision - p.fullRevision) / span) : 0;
      const width = 30;
      const filled = Math.round(frac * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${p.phase} revision ${p.revision}/${p.targetRevision} deltas ${p.deltasApplied}/${p.deltasTotal}   `);
      shown = true;
    },
    done: () => {
      if (shown) process.stderr.write('\n');
      shown = false;
    },
  };
}

await program().parseAsync(process.argv);
