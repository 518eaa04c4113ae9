import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { startSidecar, type Sidecar } from '../../src/sidecar.js';
import type { TestCluster } from './cluster.js';

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
      lines.push(...chunk.toString().split('\n').filter((l) => l !== ''));
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
