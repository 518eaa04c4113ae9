// The sidecar's main job, on one machine: a real 3-member etcd cluster on loopback with one sidecar
// beside each member, exactly as they would run in three pods. Run it with `npm run demo`.
//
//   npm run demo                  runs until Ctrl-C, then stops everything it started
//   npm run demo -- --once        brings everything up, prints the summary, stops (a smoke test)
//   DEMO_ONCE=1 npm run demo      the same as --once
//   npm run demo -- --disaster    then kills every member, wipes every data dir, brings them back
//                                 and shows every key restored from the backups
//
// Each member starts as it would in a pod: its sidecar first, then `POST /initialize?wait=...`
// (the init container), then etcd with the config file from `GET /config` (the etcd container).
//
// Everything lives under ./.demo/ (wiped at every start): per member the etcd data dir, etcd.log and
// sidecar.log (the sidecar's JSON lines), and backups/, the sidecars' file store.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { etcdFromConfigFile } from '../src/etcd/process.js';
import type { StatusBody } from '../src/server/schemas.js';
import { freeLoopbackPort as freePort } from '../src/etcd/temporary.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEMO_DIR = join(ROOT, '.demo');
const BACKUP_DIR = join(DEMO_DIR, 'backups');
const MEMBER_NAMES = ['m1', 'm2', 'm3'] as const;
const PREFERRED_API_PORTS = [8080, 8081, 8082];
const CLUSTER_TOKEN = 'ebs-demo';
const ETCD_HEALTHY_TIMEOUT_MS = 30_000;
const SIDECAR_READY_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 250;
const STOP_GRACE_MS = 5_000;
/**
 * Ctrl-C in a terminal signals the whole foreground process group, so a child may exit a moment
 * before our own SIGINT handler runs. A child exit is judged "unexpected" only if no stop request
 * arrives within this window.
 */
const EXIT_SETTLE_MS = 500;

const runFile = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// What the demo runs

interface MemberPlan {
  name: string;
  clientURL: string;
  peerURL: string;
  apiURL: string;
  listen: string;
  dir: string;
  dataDir: string;
  etcdLog: string;
  sidecarLog: string;
}

/** Why the demo is stopping: the operator asked (exit 0), or something broke (exit 1). */
class StopRequested extends Error {
  constructor(readonly signal: string) {
    super(`received ${signal}`);
  }
}

function isOnce(argv: readonly string[]): boolean {
  return argv.includes('--once') || process.env['DEMO_ONCE'] === '1';
}

function isDisaster(argv: readonly string[]): boolean {
  return argv.includes('--disaster');
}

/** Whether 127.0.0.1:port can be bound right now. */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Free ports, none handed out twice: the OS may return a just-closed ephemeral port again. */
class PortPicker {
  private readonly taken = new Set<number>();

  async random(): Promise<number> {
    for (;;) {
      const port = await freePort();
      if (!this.taken.has(port)) return this.take(port);
    }
  }

  /** The preferred port when it is free, so the printed curl commands are the familiar ones. */
  async preferred(port: number | undefined): Promise<number> {
    if (port !== undefined && !this.taken.has(port) && (await portIsFree(port))) return this.take(port);
    return this.random();
  }

  private take(port: number): number {
    this.taken.add(port);
    return port;
  }
}

async function planMembers(): Promise<MemberPlan[]> {
  const ports = new PortPicker();
  const plans: MemberPlan[] = [];
  for (const [i, name] of MEMBER_NAMES.entries()) {
    const [client, peer, api] = [await ports.random(), await ports.random(), await ports.preferred(PREFERRED_API_PORTS[i])];
    const dir = join(DEMO_DIR, name);
    plans.push({
      name,
      clientURL: `http://127.0.0.1:${client}`,
      peerURL: `http://127.0.0.1:${peer}`,
      apiURL: `http://127.0.0.1:${api}`,
      listen: `127.0.0.1:${api}`,
      dir,
      dataDir: join(dir, 'data'),
      etcdLog: join(dir, 'etcd.log'),
      sidecarLog: join(dir, 'sidecar.log'),
    });
  }
  return plans;
}

function show(path: string): string {
  return relative(process.cwd(), path) || '.';
}

// ---------------------------------------------------------------------------------------------
// Children: started, watched and always stopped

/** A process the demo started and must stop. */
interface Child {
  readonly label: string;
  readonly kind: 'etcd' | 'sidecar';
  readonly logs: string[];
  /** Resolves with a human description of how it ended. */
  readonly ended: Promise<string>;
  stop(graceMs: number): Promise<void>;
  kill(): void;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `killed by ${signal}`;
  return code === null ? 'exited' : `exit code ${code}`;
}

/** etcd started only with the config file its sidecar decided (`GET /config`), as the etcd container does. */
function etcdChild(plan: MemberPlan, configFile: string): Child {
  const etcd = etcdFromConfigFile(plan.name, configFile, plan.etcdLog);
  etcd.start();
  return {
    label: `etcd ${plan.name}`,
    kind: 'etcd',
    logs: [plan.etcdLog],
    // EtcdProcess reports null when a signal ended etcd, without naming the signal.
    ended: etcd.exited().then((code) => (code === null ? 'killed by a signal' : describeExit(code, null))),
    stop: (graceMs) => etcd.stop(graceMs),
    kill: () => void etcd.kill(),
  };
}

function sidecarArgs(plan: MemberPlan, plans: readonly MemberPlan[]): string[] {
  return [
    '--import',
    'tsx',
    'src/cli.ts',
    'serve',
    ...['--name', plan.name],
    ...['--data-dir', plan.dataDir],
    ...['--initial-cluster', plans.map((p) => `${p.name}=${p.peerURL}`).join(',')],
    ...['--initial-cluster-token', CLUSTER_TOKEN],
    ...['--advertise-client-urls', plan.clientURL],
    ...['--endpoints', plans.map((p) => p.clientURL).join(',')],
    ...['--store', `file://${BACKUP_DIR}`],
    ...['--listen', plan.listen],
    ...['--etcd-config-template', join(DEMO_DIR, 'etcd-template.yaml')],
    ...['--initialize-retry-period', '1s'],
    ...['--delta-snapshot-period', '2s'],
  ];
}

function sidecarChild(plan: MemberPlan, plans: readonly MemberPlan[]): Child {
  // The log file is the child's own stdout/stderr, not a pipe through us: its last words survive
  // even when the demo itself dies.
  const fd = openSync(plan.sidecarLog, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, sidecarArgs(plan, plans), { cwd: ROOT, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const ended = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(describeExit(code, signal)));
    child.once('error', (err) => resolve(`failed to start: ${err.message}`));
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    label: `sidecar ${plan.name}`,
    kind: 'sidecar',
    logs: [plan.sidecarLog, plan.etcdLog],
    ended,
    async stop(graceMs) {
      if (!running()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await ended;
      clearTimeout(timer);
    },
    kill: () => void child.kill('SIGKILL'),
  };
}

/**
 * Owns every child. The first unexpected exit aborts `stopping` with an error naming the child and
 * its logs; a stop signal aborts it with StopRequested. Everything waits on that one signal.
 */
class Supervisor {
  private readonly children: Child[] = [];
  private readonly controller = new AbortController();

  get stopping(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** Starts a child unless the demo is already stopping (a late step must not outlive cleanup). */
  start(make: () => Child): Child {
    this.stopping.throwIfAborted();
    const child = make();
    this.children.push(child);
    void child.ended.then((how) => this.onEnded(child, how));
    return child;
  }

  /** Kills children on purpose (the disaster): their end is not a failure. */
  async killKind(kind: Child['kind']): Promise<void> {
    const doomed = this.children.filter((c) => c.kind === kind);
    for (const c of doomed) this.children.splice(this.children.indexOf(c), 1);
    for (const c of doomed) c.kill();
    await Promise.all(doomed.map((c) => c.ended));
  }

  private async onEnded(child: Child, how: string): Promise<void> {
    if (this.stopping.aborted || !this.children.includes(child)) return;
    await sleep(EXIT_SETTLE_MS);
    if (this.stopping.aborted) return;
    this.abort(new Error(`${child.label} died unexpectedly (${how}); see ${child.logs.map(show).join(' and ')}`));
  }

  /**
   * Sidecars first (they talk to etcd and would only log errors while it goes), then etcd one
   * member at a time: a stopping etcd leader first hands leadership to a peer, and if that peer is
   * stopping at the same moment the leader waits for the transfer to time out (about 7 s).
   */
  async stopAll(): Promise<void> {
    this.abort(new StopRequested('shutdown'));
    await Promise.all(this.children.filter((c) => c.kind === 'sidecar').map((c) => c.stop(STOP_GRACE_MS)));
    for (const etcd of this.children.filter((c) => c.kind === 'etcd')) await etcd.stop(STOP_GRACE_MS);
  }

  /** For a second Ctrl-C: the operator does not want to wait for the grace period. */
  killAll(): void {
    for (const c of this.children) c.kill();
  }
}

/** Also kills sidecars when the demo exits by any path that skips stopAll (EtcdProcess does this for etcd). */
function killOnExit(supervisor: Supervisor): void {
  process.once('exit', () => supervisor.killAll());
}

function handleStopSignals(supervisor: Supervisor): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (supervisor.stopping.aborted) {
        process.stderr.write(`\n${signal} again: killing every child now\n`);
        supervisor.killAll();
        return;
      }
      process.stderr.write(`\n${signal}: stopping the sidecars and etcd members…\n`);
      supervisor.abort(new StopRequested(signal));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Bringing the cluster up

async function etcdctl(plans: readonly MemberPlan[], args: string[], signal: AbortSignal): Promise<string> {
  const endpoints = plans.map((p) => p.clientURL).join(',');
  const { stdout } = await runFile('etcdctl', [`--endpoints=${endpoints}`, '--command-timeout=5s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    signal,
  });
  return stdout;
}

/** Polls `attempt` until it returns true; on timeout the error carries the last reason it gave. */
async function pollUntil(what: string, timeoutMs: number, signal: AbortSignal, attempt: () => Promise<true | string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt finished';
  while (Date.now() < deadline) {
    signal.throwIfAborted();
    try {
      const result = await attempt();
      if (result === true) return;
      last = result;
    } catch (err) {
      signal.throwIfAborted();
      last = (err as Error).message;
    }
    await sleep(POLL_INTERVAL_MS, undefined, { signal });
  }
  throw new Error(`${what} within ${timeoutMs / 1000} s (last: ${last.trim()})`);
}

async function waitEtcdHealthy(plans: readonly MemberPlan[], signal: AbortSignal): Promise<void> {
  try {
    await pollUntil('etcd cluster not healthy', ETCD_HEALTHY_TIMEOUT_MS, signal, async () => {
      await etcdctl(plans, ['endpoint', 'health'], signal);
      return true;
    });
  } catch (err) {
    signal.throwIfAborted();
    throw new Error(`${(err as Error).message}\nsee the etcd logs: ${plans.map((p) => show(p.etcdLog)).join(', ')}`, { cause: err });
  }
}

async function waitSidecarReady(plan: MemberPlan, signal: AbortSignal): Promise<void> {
  try {
    await pollUntil(`sidecar ${plan.name} not ready at ${plan.apiURL}/readyz`, SIDECAR_READY_TIMEOUT_MS, signal, async () => {
      const res = await fetch(`${plan.apiURL}/readyz`, { signal: AbortSignal.any([signal, AbortSignal.timeout(5_000)]) });
      return res.status === 200 ? true : `HTTP ${res.status} ${await res.text()}`;
    });
  } catch (err) {
    signal.throwIfAborted();
    throw new Error(`${(err as Error).message}\nsee ${show(plan.sidecarLog)} and ${show(plan.etcdLog)}`, { cause: err });
  }
}

const SAMPLE_KEYS = 200;

/** The keys the demo writes, and after a disaster expects back byte for byte. */
function sampleKeys(): Map<string, string> {
  const keys = new Map<string, string>([
    ['demo/greeting', 'hello from etcd-backup-sidecar'],
    ['demo/members', MEMBER_NAMES.join(',')],
  ]);
  for (let i = 0; i < SAMPLE_KEYS; i++) keys.set(`demo/key-${String(i).padStart(4, '0')}`, `value ${i} written before the disaster`);
  return keys;
}

async function putSampleKeys(plans: readonly MemberPlan[], signal: AbortSignal): Promise<Map<string, string>> {
  const keys = sampleKeys();
  const client = new Etcd3({ hosts: plans.map((p) => p.clientURL), defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }) });
  try {
    for (const [key, value] of keys) {
      signal.throwIfAborted();
      await client.put(key).value(value);
    }
  } finally {
    client.close();
  }
  return keys;
}

async function readSampleKeys(plans: readonly MemberPlan[]): Promise<Record<string, string>> {
  const client = new Etcd3({ hosts: plans.map((p) => p.clientURL), defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }) });
  try {
    return await client.getAll().prefix('demo/').strings();
  } finally {
    client.close();
  }
}

interface InitializeState {
  state: string;
  decision?: string;
  reason?: string;
  progress?: string;
  error?: string;
}

/** The init container's job: POST /initialize until it succeeds, then fetch etcd's config. */
async function initializeMember(plan: MemberPlan, signal: AbortSignal, onDecision: (plan: MemberPlan, s: InitializeState) => void): Promise<string> {
  let seen = '';
  for (;;) {
    signal.throwIfAborted();
    const res = await fetch(`${plan.apiURL}/initialize?wait=2`, { method: 'POST', signal }).catch(() => undefined);
    if (!res) {
      await sleep(POLL_INTERVAL_MS, undefined, { signal });
      continue;
    }
    const body = (await res.json()) as InitializeState;
    if (body.decision && body.decision !== seen) {
      seen = body.decision;
      onDecision(plan, body);
    }
    if (res.status === 500) throw new Error(`initialization of ${plan.name} failed: ${body.error ?? body.reason}; see ${show(plan.sidecarLog)}`);
    if (res.status === 200) break;
  }
  const res = await fetch(`${plan.apiURL}/config`, { signal });
  if (!res.ok) throw new Error(`GET ${plan.apiURL}/config: HTTP ${res.status} ${await res.text()}`);
  const file = join(plan.dir, 'etcd.yaml');
  writeFileSync(file, await res.text());
  return file;
}

const printDecision = (plan: MemberPlan, s: InitializeState): void => {
  process.stdout.write(`  ${plan.name}: ${s.decision} (${s.reason})\n`);
};

/** Sidecars first, then every member initialized and started from its own config, all at once. */
async function startMembers(plans: readonly MemberPlan[], supervisor: Supervisor): Promise<void> {
  const signal = supervisor.stopping;
  for (const p of plans) supervisor.start(() => sidecarChild(p, plans));
  await Promise.all(
    plans.map(async (p) => {
      const configFile = await initializeMember(p, signal, printDecision);
      supervisor.start(() => etcdChild(p, configFile));
    }),
  );
  await waitEtcdHealthy(plans, signal);
  await Promise.all(plans.map((p) => waitSidecarReady(p, signal)));
}

async function bringUp(plans: readonly MemberPlan[], supervisor: Supervisor): Promise<Map<string, string>> {
  const signal = supervisor.stopping;
  // Fast elections on loopback; the member's identity and cluster settings are the initializer's.
  writeFileSync(join(DEMO_DIR, 'etcd-template.yaml'), 'heartbeat-interval: 100\nelection-timeout: 1000\nlogger: zap\n');
  await startMembers(plans, supervisor);
  const keys = await putSampleKeys(plans, signal);
  await waitBackedUp(plans[0] as MemberPlan, plans, signal);
  return keys;
}

/** Every member lost at once, data and all: only the backups survive. */
async function disaster(plans: readonly MemberPlan[], supervisor: Supervisor, keys: Map<string, string>): Promise<void> {
  process.stdout.write(`\nDISASTER: killing every etcd member and sidecar (SIGKILL) and wiping every data dir…\n`);
  await supervisor.killKind('sidecar');
  await supervisor.killKind('etcd');
  for (const p of plans) rmSync(p.dataDir, { recursive: true, force: true });
  process.stdout.write(`every data dir is gone; ${show(BACKUP_DIR)}/ is all that is left. Bringing the members back:\n`);
  const started = Date.now();
  await startMembers(plans, supervisor);
  await pollUntil('not every member is a voting member again', 120_000, supervisor.stopping, async () => {
    const list = await etcdctl(plans, ['member', 'list'], supervisor.stopping);
    const lines = list.trim().split('\n');
    return lines.length === plans.length && lines.every((l) => l.includes(', started,') && l.trim().endsWith('false')) ? true : list;
  });
  const back = await readSampleKeys(plans);
  const missing = [...keys].filter(([k, v]) => back[k] !== v);
  process.stdout.write(
    `\nrecovered in ${((Date.now() - started) / 1000).toFixed(1)} s: ${keys.size - missing.length} of ${keys.size} keys are back with their values${missing.length ? `; MISSING: ${missing.map(([k]) => k).join(', ')}` : ''}.\n`,
  );
  if (missing.length > 0) throw new Error(`${missing.length} keys were not restored`);
}

interface LatestChain {
  full: { name: string; lastRevision: number } | null;
  deltas: unknown[];
  lastRevision: number;
  contiguous: boolean;
}

async function fetchLatest(plan: MemberPlan, signal: AbortSignal): Promise<LatestChain> {
  const res = await fetch(`${plan.apiURL}/snapshot/latest`, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
  if (!res.ok) throw new Error(`GET ${plan.apiURL}/snapshot/latest: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as LatestChain;
}

/** Waits until the backups hold every key written so far: a full snapshot and the deltas after it. */
async function waitBackedUp(leader: MemberPlan, plans: readonly MemberPlan[], signal: AbortSignal): Promise<void> {
  const revision = Number(/"revision":(\d+)/.exec(await etcdctl(plans, ['endpoint', 'status', '-w', 'json'], signal))?.[1] ?? 0);
  await pollUntil(`backups did not reach revision ${revision}; see ${show(leader.sidecarLog)}`, SIDECAR_READY_TIMEOUT_MS, signal, async () => {
    const latest = await fetchLatest(leader, signal);
    return latest.full && latest.lastRevision >= revision ? true : `backups at revision ${latest.lastRevision}`;
  });
}

// ---------------------------------------------------------------------------------------------
// The summary

function table(rows: readonly string[][]): string {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length))) ?? [];
  return rows
    .map(
      (r) =>
        `  ${r
          .map((cell, col) => cell.padEnd(widths[col] ?? 0))
          .join('  ')
          .trimEnd()}`,
    )
    .join('\n');
}

function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function fetchStatus(plan: MemberPlan, signal: AbortSignal): Promise<StatusBody> {
  const res = await fetch(`${plan.apiURL}/status`, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
  if (!res.ok) throw new Error(`GET ${plan.apiURL}/status: HTTP ${res.status} ${await res.text()}`);
  // Our own API, validated by its response schema on the way out.
  return (await res.json()) as StatusBody;
}

function statusTable(status: StatusBody): string {
  const byName = [...status.members].sort((a, b) => a.name.localeCompare(b.name));
  const rows = byName.map((m) => [
    m.name || '(unstarted)',
    m.healthy ? 'yes' : `no${m.error ? ` (${m.error})` : ''}`,
    m.isLeader ? 'leader' : '',
    m.status?.revision?.toString() ?? '-',
    bytes(m.status?.dbSize),
  ]);
  return table([['MEMBER', 'HEALTHY', 'LEADER', 'REVISION', 'DB SIZE'], ...rows]);
}

function summary(plans: readonly MemberPlan[], status: StatusBody, latest: LatestChain, once: boolean): string {
  const first = plans[0] as MemberPlan;
  const endpoints = plans.map((p) => p.clientURL).join(',');
  const curls = ['status', 'snapshot/latest', 'snapshots', 'metrics', 'openapi.json'].map((route) => `  curl -s ${first.apiURL}/${route}`);
  return [
    '',
    `etcd-backup-sidecar demo: ${plans.length} etcd members, one sidecar each (files in ${show(DEMO_DIR)}/)`,
    '',
    table([['MEMBER', 'ETCD CLIENT URL', 'SIDECAR API', 'LOGS'], ...plans.map((p) => [p.name, p.clientURL, p.apiURL, `${show(p.etcdLog)}, ${show(p.sidecarLog)}`])]),
    '',
    `Try it (every sidecar serves the same routes):`,
    ...curls,
    `  curl -s ${first.apiURL}/initialize                 (what the initializer decided, and why)`,
    `  curl -s -X POST ${first.apiURL}/snapshot/full      (forwarded to the backup leader's sidecar)`,
    `  npx tsx src/cli.ts snapshots list --store file://${BACKUP_DIR}`,
    `  ETCDCTL_API=3 etcdctl --endpoints=${endpoints} get --prefix demo/`,
    '',
    `Cluster as ${first.name}'s sidecar sees it (GET ${first.apiURL}/status):`,
    statusTable(status),
    '',
    `Backups in ${show(BACKUP_DIR)}/ (GET ${first.apiURL}/snapshot/latest): full snapshot ${latest.full?.name ?? '-'} + ${latest.deltas.length} deltas, restorable to revision ${latest.lastRevision}${latest.contiguous ? '' : ' (GAPS)'}`,
    '',
    once ? '--once: stopping now.' : 'Running. Press Ctrl-C to stop every sidecar and etcd member.',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const once = isOnce(process.argv.slice(2));
  const supervisor = new Supervisor();
  killOnExit(supervisor);
  handleStopSignals(supervisor);

  rmSync(DEMO_DIR, { recursive: true, force: true });
  mkdirSync(BACKUP_DIR, { recursive: true });
  for (const name of MEMBER_NAMES) mkdirSync(join(DEMO_DIR, name), { recursive: true });

  let failure: Error | undefined;
  try {
    const plans = await planMembers();
    process.stdout.write(`starting ${plans.length} etcd members and their sidecars (logs in ${show(DEMO_DIR)}/)…\n`);
    const keys = await bringUp(plans, supervisor);
    if (isDisaster(process.argv.slice(2))) await disaster(plans, supervisor, keys);
    const first = plans[0] as MemberPlan;
    process.stdout.write(summary(plans, await fetchStatus(first, supervisor.stopping), await fetchLatest(first, supervisor.stopping), once));
    if (!once) await new Promise((resolve) => supervisor.stopping.addEventListener('abort', resolve, { once: true }));
  } catch (err) {
    // An aborted step throws an AbortError; the reason it was aborted is what counts.
    failure = supervisor.stopping.aborted ? (supervisor.stopping.reason as Error) : (err as Error);
  }
  if (!failure && supervisor.stopping.aborted) failure = supervisor.stopping.reason as Error;

  await supervisor.stopAll();
  if (failure && !(failure instanceof StopRequested)) {
    process.stderr.write(`demo failed: ${failure.message}\n`);
    return 1;
  }
  process.stdout.write('stopped every sidecar and etcd member.\n');
  return 0;
}

process.exit(await main());
