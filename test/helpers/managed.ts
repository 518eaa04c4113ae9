import './reaper.js';
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { etcdFromConfigFile, type EtcdProcess } from '../../src/etcd/process.js';
import { SIDECAR_NODE_FLAGS } from '../../src/launcher/node-flags.js';
import type { InitializeBody } from '../../src/server/schemas.js';
import { eventually, freePort, parseEndpointStatus, type EtcdctlEndpointStatus } from './cluster.js';

const run = promisify(execFile);

/**
 * A member's log file, appended to. A process started by a step still running when its test ended
 * (a Promise.all that one failure cut short) may open it after stop() removed the folder: that must
 * not crash the test runner with an uncaught ENOENT.
 */
function memberLog(file: string): WriteStream {
  return createWriteStream(file, { flags: 'a' }).on('error', () => {});
}

/** Debian's libfaketime (package faketime), or undefined when it is not installed. */
export function faketimeLibrary(): string | undefined {
  const dirs = ['/usr/lib/x86_64-linux-gnu/faketime', '/usr/lib/aarch64-linux-gnu/faketime', '/usr/lib/faketime'];
  for (const d of dirs) for (const f of ['libfaketimeMT.so.1', 'libfaketime.so.1']) if (existsSync(join(d, f))) return join(d, f);
  return undefined;
}

export interface ManagedMember {
  name: string;
  clientURL: string;
  peerURL: string;
  apiURL: string;
  apiPort: number;
  dir: string;
  dataDir: string;
  sidecar?: ChildProcess;
  etcd?: EtcdProcess;
  /** `run-etcd` and the etcd it runs (one process group), in place of `etcd`. */
  launcher?: ChildProcess;
}

/**
 * Members brought up the way the product is deployed: a sidecar (`serve`, the built CLI) per
 * member, `POST /initialize` until it succeeds, then etcd started from `GET /config`. Nothing here
 * decides for the sidecars; the tests only start processes, inject faults and look.
 */
export class ManagedCluster {
  readonly members: ManagedMember[] = [];
  readonly storeDir: string;
  /** faketime offsets (e.g. '-60s') of the sidecars started from now on, by member name. */
  readonly clockSkew = new Map<string, string>();
  private readonly template: string;

  private constructor(
    readonly dir: string,
    private readonly sidecarFlags: Record<string, string>,
  ) {
    this.storeDir = join(dir, 'backups');
    this.template = join(dir, 'etcd-template.yaml');
    // Fast elections on loopback; everything else is the initializer's.
    writeFileSync(this.template, 'heartbeat-interval: 100\nelection-timeout: 1000\nlog-level: warn\n');
  }

  static async define(names: readonly string[], sidecarFlags: Record<string, string> = {}): Promise<ManagedCluster> {
    const c = new ManagedCluster(mkdtempSync(join(tmpdir(), 'ebs-managed-')), sidecarFlags);
    for (const name of names) await c.add(name);
    return c;
  }

  /** Defines one more member (scale-up); the sidecars of the others keep their configuration. */
  async add(name: string): Promise<ManagedMember> {
    // Each port is free when asked for, but the kernel may hand the same one out twice in a row:
    // no two of the cluster's ports may collide (a sidecar's API on its etcd's client port).
    const taken = new Set(this.members.flatMap((x) => [x.clientURL, x.peerURL, x.apiURL].map((u) => Number(new URL(u).port))));
    const fresh = async (): Promise<number> => {
      for (;;) {
        const p = await freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    const [client, peer, api] = [await fresh(), await fresh(), await fresh()];
    const dir = join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    const m: ManagedMember = { name, clientURL: `http://127.0.0.1:${client}`, peerURL: `http://127.0.0.1:${peer}`, apiURL: `http://127.0.0.1:${api}`, apiPort: api, dir, dataDir: join(dir, 'data') };
    this.members.push(m);
    return m;
  }

  member(name: string): ManagedMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientURL);
  }

  /** The flags an operator gives the sidecar of `name` (the initial cluster is every member defined now). */
  flags(name: string, extra: Record<string, string> = {}): Record<string, string> {
    const m = this.member(name);
    return {
      name: m.name,
      'data-dir': m.dataDir,
      'initial-cluster': this.members.map((x) => `${x.name}=${x.peerURL}`).join(','),
      'initial-cluster-token': 'managed',
      'advertise-client-urls': m.clientURL,
      endpoints: this.endpoints.join(','),
      listen: `127.0.0.1:${m.apiPort}`,
      store: `file://${this.storeDir}`,
      'etcd-config-template': this.template,
      'leader-check-period': '500ms',
      'heartbeat-period': '1s',
      'heartbeat-ttl': '4s',
      'delta-snapshot-period': '1s',
      'initialize-retry-period': '500ms',
      'log-level': 'debug',
      ...this.sidecarFlags,
      ...extra,
    };
  }

  async startSidecar(name: string, extra: Record<string, string> = {}): Promise<void> {
    const m = this.member(name);
    if (m.sidecar && m.sidecar.exitCode === null && m.sidecar.signalCode === null) return;
    const args = Object.entries(this.flags(name, extra)).flatMap(([k, v]) => [`--${k}`, v]);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
    // A skewed clock for this sidecar alone: libfaketime preloaded into node itself (the faketime
    // command forks, and killing it would leave the sidecar running).
    const skew = this.clockSkew.get(name);
    if (skew) {
      const lib = faketimeLibrary();
      if (!lib) throw new Error('libfaketime is not installed (Debian package faketime)');
      Object.assign(env, { LD_PRELOAD: lib, FAKETIME: skew });
    }
    const child = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, 'dist/cli.js', 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = memberLog(join(m.dir, 'sidecar.log'));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    process.once('exit', () => child.kill('SIGKILL'));
    m.sidecar = child;
    await eventually(`${name} sidecar API up`, async () => ((await fetch(`${m.apiURL}/healthz`).catch(() => undefined))?.ok ? true : undefined), 30_000);
  }

  async killSidecar(name: string): Promise<void> {
    const child = this.member(name).sidecar;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  async initializeState(name: string): Promise<InitializeBody> {
    const res = await fetch(`${this.member(name).apiURL}/initialize`);
    return (await res.json()) as InitializeBody;
  }

  /** POST /initialize until it succeeds (a waiting member keeps answering 202). */
  async initialize(name: string, timeoutMs = 90_000): Promise<InitializeBody> {
    const m = this.member(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await fetch(`${m.apiURL}/initialize?wait=5`, { method: 'POST' });
      const body = (await res.json()) as InitializeBody;
      if (res.status === 200) return body;
      if (res.status === 500) throw new Error(`${name}: initialization failed: ${body.error ?? JSON.stringify(body)}\n${this.logs(name)}`);
      if (Date.now() > deadline) throw new Error(`${name}: initialization not done within ${timeoutMs} ms: ${body.decision}: ${body.reason} (progress: ${body.progress})\n${this.logs(name)}`);
    }
  }

  /** GET /config, written where etcd reads it, then etcd started with it. */
  async startEtcd(name: string): Promise<string> {
    const m = this.member(name);
    const res = await fetch(`${m.apiURL}/config`);
    const yaml = await res.text();
    if (res.status !== 200) throw new Error(`${name}: GET /config answered ${res.status}: ${yaml}`);
    const file = join(m.dir, 'etcd.yaml');
    writeFileSync(file, yaml);
    m.etcd = etcdFromConfigFile(name, file, join(m.dir, 'etcd.log'));
    m.etcd.start();
    await this.waitAnswers(name, yaml);
    return yaml;
  }

  /** What an init container and the etcd container do: sidecar up, initialize, etcd from its config. */
  async up(name: string, extra: Record<string, string> = {}): Promise<InitializeBody> {
    await this.startSidecar(name, extra);
    const body = await this.initialize(name);
    await this.startEtcd(name);
    return body;
  }

  /** Restarts etcd in place from a config file (an etcd container restarted without its init container). */
  async restartEtcdFrom(name: string, file: string): Promise<void> {
    const m = this.member(name);
    await m.etcd?.kill();
    m.etcd = etcdFromConfigFile(name, file, join(m.dir, 'etcd.log'));
    m.etcd.start();
    await this.waitAnswers(name, readFileSync(file, 'utf8'));
  }

  /** Answering status is all a member can promise alone: a learner or a member without quorum does too. */
  private async waitAnswers(name: string, config: string): Promise<void> {
    const m = this.member(name);
    await eventually(`${name} etcd answers`, async () => ((await this.etcdctl(['endpoint', 'status'], [m.clientURL]).catch(() => '')) !== '' ? true : undefined), 30_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}\n${config}\n${this.logs(name)}`);
    });
  }

  async killEtcd(name: string): Promise<void> {
    const m = this.member(name);
    await m.etcd?.kill();
    const launcher = m.launcher;
    if (launcher && launcher.exitCode === null && launcher.signalCode === null) {
      const gone = new Promise((r) => launcher.once('exit', r));
      // Its process group: the launcher and the etcd it runs die together, like a container.
      process.kill(-(launcher.pid as number), 'SIGKILL');
      await gone;
      // etcd may outlive its parent for a moment: wait until its port is free.
      await eventually(`${name} etcd gone`, async () => ((await this.etcdctl(['endpoint', 'status'], [m.clientURL]).catch(() => '')) === '' ? true : undefined), 15_000, 200);
    }
    delete m.launcher;
  }

  /**
   * The member as a pod whose etcd container runs the launcher (`run-etcd`): the sidecar, then the
   * launcher, which initializes, starts etcd, and stops and restarts it when the sidecar asks.
   * Resolves once the launcher's etcd answers.
   */
  async upWithLauncher(name: string, extra: Record<string, string> = {}): Promise<void> {
    const m = this.member(name);
    const configFile = join(m.dir, 'etcd-launched.yaml');
    await this.startSidecar(name, { 'etcd-config-file': configFile, ...extra });
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
    const child = spawn(process.execPath, ['dist/cli.js', 'run-etcd', '--listen', `127.0.0.1:${m.apiPort}`, '--etcd-config-file', configFile, '--poll', '500'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const log = memberLog(join(m.dir, 'etcd.log'));
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    process.once('exit', () => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    });
    m.launcher = child;
  }

  /** Kills the member's etcd and sidecar: the pod is gone. */
  async down(name: string): Promise<void> {
    await this.killEtcd(name);
    await this.killSidecar(name);
  }

  wipe(name: string): void {
    rmSync(this.member(name).dataDir, { recursive: true, force: true });
  }

  async etcdctl(args: string[], endpoints: string[] = this.endpoints): Promise<string> {
    const { stdout } = await run('etcdctl', [`--endpoints=${endpoints.join(',')}`, '--command-timeout=5s', ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    return stdout;
  }

  /** One member's `etcdctl endpoint status`. */
  async endpointStatus(name: string): Promise<EtcdctlEndpointStatus> {
    const [row] = parseEndpointStatus(await this.etcdctl(['endpoint', 'status', '-w', 'json'], [this.member(name).clientURL]));
    if (!row) throw new Error(`etcdctl endpoint status: no row for ${name}`);
    return row;
  }

  /** The member list as etcd reports it (any answering endpoint). */
  async memberList(): Promise<{ ID: string; name: string; peerURLs: string[]; clientURLs?: string[]; isLearner?: boolean }[]> {
    const out = JSON.parse(await this.etcdctl(['member', 'list', '-w', 'json'])) as {
      members?: { ID: number | string; name: string; peerURLs: string[]; clientURLs?: string[]; isLearner?: boolean }[];
    };
    return (out.members ?? []).map((m) => ({ ...m, ID: BigInt(m.ID).toString(16) }));
  }

  /** Waits until the cluster has exactly `n` started voting members, and returns the cluster IDs the members report (one, if all is well). */
  async waitVoters(n: number, timeoutMs = 60_000): Promise<Set<string>> {
    await eventually(
      `${n} started voting members`,
      async () => {
        const list = await this.memberList();
        const voters = list.filter((m) => !m.isLearner && m.name !== '' && (m.clientURLs ?? []).length > 0);
        return voters.length === n && list.length === n ? true : undefined;
      },
      timeoutMs,
      500,
    );
    const ids = new Set<string>();
    for (const m of this.members.filter((x) => x.etcd?.running || (x.launcher !== undefined && x.launcher.exitCode === null && x.launcher.signalCode === null))) {
      const out = JSON.parse(await this.etcdctl(['endpoint', 'status', '-w', 'json'], [m.clientURL])) as { Status: { header: { cluster_id: number | string } } }[];
      for (const s of out) ids.add(BigInt(s.Status.header.cluster_id).toString(16));
    }
    return ids;
  }

  logs(name: string, lines = 30): string {
    const tail = (file: string): string => {
      try {
        return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
      } catch {
        return '(none)';
      }
    };
    const m = this.member(name);
    return `--- ${name} sidecar ---\n${tail(join(m.dir, 'sidecar.log'))}\n--- ${name} etcd ---\n${tail(join(m.dir, 'etcd.log'))}`;
  }

  async stop(): Promise<void> {
    for (const m of this.members) {
      await m.etcd?.stop().catch(() => undefined);
      if (m.launcher?.pid && m.launcher.exitCode === null) {
        try {
          process.kill(-m.launcher.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      m.sidecar?.kill('SIGKILL');
    }
    // Every killed process gone before its folder is removed (a sidecar writing its log would recreate it).
    const alive = this.members.flatMap((m) => [m.sidecar, m.launcher]).filter((p): p is ChildProcess => p !== undefined && p.exitCode === null && p.signalCode === null);
    await Promise.all(alive.map((p) => once(p, 'exit')));
    // EBS_TEST_KEEP_DIRS=1 keeps the logs, data dirs and store of a failed run for a look.
    if (process.env.EBS_TEST_KEEP_DIRS) console.log(`# kept ${this.dir}`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
