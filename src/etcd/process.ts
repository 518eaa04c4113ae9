import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** How to start one etcd member; field names are etcd's flags. */
export interface EtcdMemberSpec {
  name: string;
  dataDir: string;
  listenClientUrls: string[];
  advertiseClientUrls: string[];
  listenPeerUrls: string[];
  initialAdvertisePeerUrls: string[];
  initialCluster: string;
  initialClusterState: 'new' | 'existing';
  initialClusterToken: string;
  /** Where etcd's own log goes. */
  logFile: string;
  extraArgs?: string[];
  etcdBinary?: string;
  /** Added to this process's environment for etcd. */
  env?: Record<string, string>;
  /**
   * An etcd config file (what `GET /config` serves). etcd then ignores every other flag, so the
   * fields above only describe the member; the file is what it starts with.
   */
  configFile?: string;
}

export function etcdArgs(spec: EtcdMemberSpec): string[] {
  if (spec.configFile) return [`--config-file=${spec.configFile}`];
  return [
    `--name=${spec.name}`,
    `--data-dir=${spec.dataDir}`,
    `--listen-client-urls=${spec.listenClientUrls.join(',')}`,
    `--advertise-client-urls=${spec.advertiseClientUrls.join(',')}`,
    `--listen-peer-urls=${spec.listenPeerUrls.join(',')}`,
    `--initial-advertise-peer-urls=${spec.initialAdvertisePeerUrls.join(',')}`,
    `--initial-cluster=${spec.initialCluster}`,
    `--initial-cluster-state=${spec.initialClusterState}`,
    `--initial-cluster-token=${spec.initialClusterToken}`,
    ...(spec.extraArgs ?? []),
  ];
}

const live = new Set<ChildProcess>();

// Whatever way this process ends, no etcd it started may outlive it: a stray member on a port
// breaks the next run. SIGKILL works on a SIGSTOPped process too.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** One etcd server process with the signals the fault tests and the restore path need. */
export class EtcdProcess {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<number | null> = Promise.resolve(null);

  constructor(readonly spec: EtcdMemberSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.running) throw new Error(`etcd ${this.spec.name} is already running`);
    mkdirSync(dirname(this.spec.logFile), { recursive: true });
    const log = createWriteStream(this.spec.logFile, { flags: 'a' });
    const child = spawn(this.spec.etcdBinary ?? 'etcd', etcdArgs(this.spec), { stdio: ['ignore', 'pipe', 'pipe'], ...(this.spec.env ? { env: { ...process.env, ...this.spec.env } } : {}) });
    // Both pipes feed one log: neither may end it (the other could still write, "write after end"
    // when etcd dies at start with words on stderr); it ends once the child's streams are closed.
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once('close', () => log.end());
    live.add(child);
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code) => {
        live.delete(child);
        resolve(code);
      });
      child.once('error', () => {
        live.delete(child);
        resolve(null);
      });
    });
    this.child = child;
  }

  /** Resolves with the exit code (null when killed by a signal) once the process is gone. */
  exited(): Promise<number | null> {
    return this.exitPromise;
  }

  /** SIGSTOP: a silent black hole; its sockets stay open and nothing answers (seeds 000, 001). */
  /** SIGSTOP, returning once every thread has stopped (see freezeProcess). */
  freeze(): void {
    if (this.child?.pid !== undefined) freezeProcess(this.child.pid, this.spec.name);
  }

  thaw(): void {
    this.child?.kill('SIGCONT');
  }

  /** SIGKILL, no clean shutdown: what a node crash or OOM kill looks like to the cluster. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGKILL');
    await this.exitPromise;
  }

  /** SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL if it lingers. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGCONT');
    this.child?.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

/** An etcd started only from its config file (what `GET /config` serves): the file is the member. */
export function etcdFromConfigFile(name: string, configFile: string, logFile: string, etcdBinary?: string): EtcdProcess {
  return new EtcdProcess({
    ...(etcdBinary ? { etcdBinary } : {}),
    name,
    configFile,
    logFile,
    dataDir: '',
    listenClientUrls: [],
    advertiseClientUrls: [],
    listenPeerUrls: [],
    initialAdvertisePeerUrls: [],
    initialCluster: '',
    initialClusterState: 'new',
    initialClusterToken: '',
  });
}

/**
 * SIGSTOP `pid` and return once every thread of it is stopped: the signal is delivered
 * asynchronously, and a request sent right after could still meet a thread not yet stopped (a
 * frozen etcd once answered 32 calls within 20 ms of its SIGSTOP). How tests make a black hole.
 */
export function freezeProcess(pid: number, name: string): void {
  process.kill(pid, 'SIGSTOP');
  const tasks = `/proc/${pid}/task`;
  const deadline = Date.now() + 5_000;
  // The state is the field after the command name, which is in parentheses and may hold spaces.
  const state = (stat: string): string | undefined => stat.slice(stat.lastIndexOf(')') + 2)[0];
  const stopped = (): boolean => readdirSync(tasks).every((t) => ['T', 't'].includes(state(readFileSync(`${tasks}/${t}/stat`, 'utf8')) ?? ''));
  while (!stopped()) {
    if (Date.now() > deadline) throw new Error(`${name} did not stop within 5 s of SIGSTOP`);
  }
}
