import './reaper.js';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdProcess, type EtcdMemberSpec } from '../../src/etcd/process.js';
import { freeLoopbackPort } from '../../src/etcd/temporary.js';
import { withDeadline } from '../../src/resilience.js';
import { makePki, type TestPki } from './tls.js';
// First: the release every etcd of the tests is (EBS_TEST_ETCD_DIR first in PATH).
import './etcd-release.js';

const run = promisify(execFile);

/** A port free on 127.0.0.1 right now (the OS picks it). */
/** A free port on loopback, for etcd members and sidecars. */
export const freePort = freeLoopbackPort;

export interface EtcdctlEndpointStatus {
  Endpoint: string;
  Status: { header: { cluster_id: string; member_id: string; revision: number }; leader: string; dbSize: number; raftIndex: number };
}

/** The rows of `etcdctl endpoint status -w json`, with etcd's uint64 IDs kept exact (as decimal strings). */
export function parseEndpointStatus(out: string): EtcdctlEndpointStatus[] {
  // JSON.parse would round IDs above 2^53; quote them first.
  return JSON.parse(out.replace(/"(member_id|cluster_id|leader)":(\d+)/g, '"$1":"$2"')) as EtcdctlEndpointStatus[];
}

export interface TestMember {
  name: string;
  clientURL: string;
  peerURL: string;
  dataDir: string;
  process: EtcdProcess;
  /** This member's etcd when it is not the cluster's (a member upgraded in a rolling upgrade). */
  etcdBinary?: string;
}

export interface ClusterOptions {
  /** Extra etcd flags for every member. */
  extraArgs?: string[];
  token?: string;
  /** Serve clients over TLS with client-certificate auth (peers stay plain on loopback). */
  tls?: boolean;
  /** Default: the etcd in PATH (EBS_TEST_ETCD_DIR's, see etcd-release.ts). The compatibility tests start other releases from .peers/. */
  etcdBinary?: string;
}

/**
 * N real etcd processes on random loopback ports in a temp dir, with the faults the tests inject:
 * freeze (SIGSTOP), thaw, kill (SIGKILL), restart, wipe. `stop()` removes every process and file;
 * processes are also killed when the test process exits, whatever the outcome.
 */
export class TestCluster {
  readonly members: TestMember[] = [];

  /** Set with `tls`: the CA and the certificates clients must present. */
  readonly pki: TestPki | undefined;

  private constructor(
    readonly dir: string,
    private readonly opts: ClusterOptions,
  ) {
    this.pki = opts.tls ? makePki(dir) : undefined;
  }

  static async start(size: number, opts: ClusterOptions = {}): Promise<TestCluster> {
    const cluster = new TestCluster(mkdtempSync(join(tmpdir(), 'ebs-cluster-')), opts);
    for (let i = 0; i < size; i++) await cluster.define(`m${i + 1}`);
    const initialCluster = cluster.initialCluster();
    for (const m of cluster.members) {
      m.process = new EtcdProcess(cluster.spec(m, initialCluster, 'new'));
      m.process.start();
    }
    try {
      await cluster.waitHealthy();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private async define(name: string): Promise<TestMember> {
    const [client, peer] = [await freePort(), await freePort()];
    const m: TestMember = {
      name,
      clientURL: `${this.pki ? 'https' : 'http'}://127.0.0.1:${client}`,
      peerURL: `http://127.0.0.1:${peer}`,
      dataDir: join(this.dir, name, 'data'),
      process: undefined as unknown as EtcdProcess, // set right after, once the cluster string is known
    };
    this.members.push(m);
    return m;
  }

  private initialCluster(members: TestMember[] = this.members): string {
    return members.map((m) => `${m.name}=${m.peerURL}`).join(',');
  }

  private spec(m: TestMember, initialCluster: string, state: 'new' | 'existing'): EtcdMemberSpec {
    return {
      name: m.name,
      dataDir: m.dataDir,
      listenClientUrls: [m.clientURL],
      advertiseClientUrls: [m.clientURL],
      listenPeerUrls: [m.peerURL],
      initialAdvertisePeerUrls: [m.peerURL],
      initialCluster,
      initialClusterState: state,
      initialClusterToken: this.opts.token ?? 'ebs-test',
      logFile: join(this.dir, m.name, 'etcd.log'),
      // Short heartbeats keep elections (and so the tests) quick on a loopback network.
      extraArgs: ['--heartbeat-interval=100', '--election-timeout=1000', '--log-level=warn', ...this.tlsArgs(), ...(this.opts.extraArgs ?? [])],
      ...((m.etcdBinary ?? this.opts.etcdBinary) ? { etcdBinary: m.etcdBinary ?? this.opts.etcdBinary } : {}),
    };
  }

  private tlsArgs(): string[] {
    if (!this.pki) return [];
    return [`--cert-file=${this.pki.serverCert}`, `--key-file=${this.pki.serverKey}`, '--client-cert-auth', `--trusted-ca-file=${this.pki.ca}`];
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientURL);
  }

  member(name: string): TestMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  }

  /** etcdctl against this cluster (the real client, as an operator would type it). */
  async etcdctl(args: string[], endpoints: string[] = this.endpoints): Promise<string> {
    const tls = this.pki ? [`--cacert=${this.pki.ca}`, `--cert=${this.pki.clientCert}`, `--key=${this.pki.clientKey}`] : [];
    const { stdout } = await run('etcdctl', [`--endpoints=${endpoints.join(',')}`, '--command-timeout=5s', ...tls, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    return stdout;
  }

  /** Turns on etcd auth with a root user holding `password`. */
  async enableAuth(password: string): Promise<void> {
    await this.etcdctl(['user', 'add', `root:${password}`]);
    await this.etcdctl(['auth', 'enable']);
  }

  /** Waits until every running member reports itself healthy (etcdctl endpoint health). */
  async waitHealthy(timeoutMs = 30_000, members: TestMember[] = this.members.filter((m) => m.process.running)): Promise<void> {
    try {
      await eventually(
        'every running member healthy',
        () =>
          this.etcdctl(
            ['endpoint', 'health'],
            members.map((m) => m.clientURL),
          ),
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.logs()}`, { cause: err });
    }
  }

  /** The raft leader's name, as the members report it. */
  async leader(): Promise<string> {
    const rows = await this.endpointStatus(this.members.filter((m) => m.process.running).map((m) => m.clientURL));
    const leaderRow = rows.find((r) => r.Status.header.member_id === r.Status.leader);
    if (!leaderRow) throw new Error('no member reports itself leader');
    const m = this.members.find((x) => x.clientURL === leaderRow.Endpoint);
    if (!m) throw new Error(`leader endpoint ${leaderRow.Endpoint} is not a member of this cluster`);
    return m.name;
  }

  /** `etcdctl endpoint status -w json`, with etcd's uint64 IDs kept exact (as decimal strings). */
  async endpointStatus(endpoints: string[] = this.endpoints): Promise<EtcdctlEndpointStatus[]> {
    return parseEndpointStatus(await this.etcdctl(['endpoint', 'status', '-w', 'json'], endpoints));
  }

  freeze(name: string): void {
    this.member(name).process.freeze();
  }

  thaw(name: string): void {
    this.member(name).process.thaw();
  }

  async kill(name: string): Promise<void> {
    await this.member(name).process.kill();
  }

  /** Starts a stopped member again on its existing data dir. */
  restart(name: string): void {
    const m = this.member(name);
    m.process = new EtcdProcess(this.spec(m, this.initialCluster(), 'existing'));
    m.process.start();
  }

  /**
   * One step of a rolling upgrade: the member stopped cleanly, then started on the same data dir
   * with `etcdBinary` (another release); resolves once the whole cluster is healthy again.
   */
  async upgrade(name: string, etcdBinary: string): Promise<void> {
    const m = this.member(name);
    await m.process.stop();
    m.etcdBinary = etcdBinary;
    this.restart(name);
    await this.waitHealthy(60_000);
  }

  /** Deletes a member's data dir (stop it first). */
  wipe(name: string): void {
    const m = this.member(name);
    if (m.process.running) throw new Error(`wipe ${name}: stop the member first`);
    rmSync(m.dataDir, { recursive: true, force: true });
  }

  /**
   * `etcdctl member add --learner`, then starts that member. With `start: false` it stays an
   * added-but-unstarted member (empty name, no client URLs in the member list).
   */
  async addLearner(name: string, opts: { start?: boolean } = {}): Promise<TestMember> {
    const m = await this.define(name);
    // etcd refuses reconfiguration with "unhealthy cluster" until every member has been connected
    // for a few seconds (its --strict-reconfig-check), so a freshly started cluster needs retries.
    await eventually('member add --learner', () => this.etcdctl(['member', 'add', name, `--peer-urls=${m.peerURL}`, '--learner']), 30_000, 500);
    m.process = new EtcdProcess(this.spec(m, this.initialCluster(), 'existing'));
    if (opts.start !== false) m.process.start();
    return m;
  }

  /** The tail of every member's etcd log, for failure messages. */
  logs(lines = 20): string {
    return this.members
      .map((m) => {
        const file = join(this.dir, m.name, 'etcd.log');
        const text = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n') : '(no log)';
        return `--- ${m.name} ---\n${text}`;
      })
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.process?.stop(2_000)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a value other than undefined, or fails after the timeout. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      // One hung attempt (a call to a frozen or restarting member) must not eat the whole budget.
      const v = await withDeadline(`${what} (one attempt)`, Math.max(1, deadline - Date.now()), () => check());
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`${what}: not reached within ${timeoutMs} ms${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
}
