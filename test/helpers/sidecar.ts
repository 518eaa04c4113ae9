import './reaper.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { startSidecar, type Sidecar } from '../../src/sidecar.js';
import { eventually, freePort, type TestCluster } from './cluster.js';

/** The config `serve` would build for the sidecar beside `member`, from flags as an operator types them. */
export function sidecarConfig(cluster: TestCluster, member: string, flags: Record<string, string> = {}): Config {
  const m = cluster.member(member);
  return loadConfig({
    flags: {
      name: m.name,
      'data-dir': m.dataDir,
      'initial-cluster': cluster.members.map((x) => `${x.name}=${x.peerURL}`).join(','),
      'advertise-client-urls': m.clientURL,
      endpoints: cluster.endpoints.join(','),
      listen: '127.0.0.1:0',
      store: `file://${cluster.dir}/backups`,
      'log-level': 'debug',
      ...flags,
    },
    env: {},
    requireMember: true,
  }).config;
}

/** A logger whose every line is kept, so tests can read what the sidecar logged. */
export function capturingLogger(level = 'debug'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  return { log: createLogger(level, sink), lines };
}

export async function startTestSidecar(cluster: TestCluster, member: string, flags: Record<string, string> = {}): Promise<Sidecar & { lines: string[] }> {
  const { log, lines } = capturingLogger();
  const sidecar = await startSidecar(sidecarConfig(cluster, member, flags), log);
  return Object.assign(sidecar, { lines });
}

export async function getJson<T>(url: string): Promise<{ status: number; body: T; ms: number }> {
  const started = performance.now();
  const res = await fetch(url);
  const body = (await res.json()) as T;
  return { status: res.status, body, ms: performance.now() - started };
}

export interface SidecarProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/**
 * The sidecar as its own process (`serve` through tsx), so tests can SIGKILL it mid-work. Flags as
 * for `sidecarConfig`; resolves once the API answers.
 */
export async function spawnSidecar(cluster: TestCluster, member: string, flags: Record<string, string> = {}): Promise<SidecarProcess> {
  const m = cluster.member(member);
  const port = await freePort();
  const all: Record<string, string> = {
    name: m.name,
    'data-dir': m.dataDir,
    'initial-cluster': cluster.members.map((x) => `${x.name}=${x.peerURL}`).join(','),
    'advertise-client-urls': m.clientURL,
    endpoints: cluster.endpoints.join(','),
    listen: `127.0.0.1:${port}`,
    store: `file://${cluster.dir}/backups`,
    'log-level': 'debug',
    ...flags,
  };
  const args = Object.entries(all).flatMap(([k, v]) => [`--${k}`, v]);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  process.once('exit', () => child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  await eventually('sidecar API up', async () => ((await fetch(`${url}/healthz`).catch(() => undefined))?.ok ? true : undefined), 30_000);
  return { url, child, output: () => out, exited };
}
