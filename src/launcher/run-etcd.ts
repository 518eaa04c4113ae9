/**
 * `run-etcd`: runs etcd the way the sidecar decides, for as long as the container lives. It asks
 * the sidecar to initialize (`POST /initialize`), starts etcd with the config it serves (`GET
 * /config`), and stops etcd when the sidecar says so (`stopEtcd` in `GET /initialize`: the cluster
 * lost quorum for good and this member's data must take part in a recovery), then starts over. An
 * init container alone cannot do this: it runs once per pod, while a recovery can need the etcd of
 * a pod that never restarted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, rename } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.js';

export interface LauncherOptions {
  /** The sidecar's API, e.g. http://127.0.0.1:8080. */
  sidecarURL: string;
  token?: string;
  /** Where etcd's config file is written; etcd runs with --config-file set to it. */
  configFile: string;
  etcdBinary: string;
  pollMs: number;
  /** SIGTERM to etcd, then SIGKILL after this long. */
  stopGraceMs: number;
  log: Logger;
  signal: AbortSignal;
}

interface InitStatus {
  state: string;
  stopEtcd?: boolean;
  decision?: string;
  reason?: string;
  error?: string;
}

class SidecarSaid extends Error {}

/** `POST /initialize?wait=30` holds the answer up to 30 s; anything else answers at once. */
async function call(o: LauncherOptions, method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = o.token ? { authorization: `Bearer ${o.token}` } : {};
  const res = await fetch(new URL(path, o.sidecarURL), { method, headers, signal: AbortSignal.any([o.signal, AbortSignal.timeout(timeoutMs)]) });
  return { status: res.status, text: await res.text() };
}

/** POST /initialize until it succeeds; a sidecar that is not up yet or still deciding is waited for. */
async function initialize(o: LauncherOptions): Promise<InitStatus> {
  for (;;) {
    o.signal.throwIfAborted();
    let res: { status: number; text: string } | undefined;
    try {
      res = await call(o, 'POST', '/initialize?wait=30', 60_000);
    } catch (err) {
      if (o.signal.aborted) throw err;
      o.log.info({ err: (err as Error).message }, 'the sidecar does not answer yet');
    }
    if (res) {
      const body = JSON.parse(res.text) as InitStatus;
      if (res.status === 200) return body;
      if (res.status === 500) throw new SidecarSaid(`initialization failed: ${body.error ?? res.text}`);
      if (res.status !== 202) throw new SidecarSaid(`POST /initialize answered ${res.status}: ${res.text}`);
      o.log.info({ decision: body.decision, reason: body.reason }, 'the sidecar is still initializing');
    }
    await sleep(o.pollMs, undefined, { signal: o.signal });
  }
}

/** The config written whole (temp file, fsync, rename): etcd never reads half a file. */
async function writeConfig(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

async function stop(child: ChildProcess, exited: Promise<number | null>, graceMs: number): Promise<void> {
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Runs until etcd exits on its own (its exit code) or the signal aborts (0). */
export async function runEtcd(o: LauncherOptions): Promise<number> {
  for (;;) {
    const init = await initialize(o);
    o.log.info({ decision: init.decision, reason: init.reason }, 'initialized');
    const config = await call(o, 'GET', '/config', 10_000);
    if (config.status !== 200) throw new SidecarSaid(`GET /config answered ${config.status}: ${config.text}`);
    await writeConfig(o.configFile, config.text);
    const child = spawn(o.etcdBinary, [`--config-file=${o.configFile}`], { stdio: 'inherit' });
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', (err) => {
        o.log.error({ err: err.message }, 'etcd did not start');
        resolve(127);
      });
    });
    let code: number | null | undefined;
    void exited.then((c) => (code = c));
    o.log.info({ pid: child.pid, configFile: o.configFile }, 'etcd started');
    for (;;) {
      await Promise.race([sleep(o.pollMs), exited]).catch(() => undefined);
      if (code !== undefined) {
        o.log.warn({ code }, 'etcd exited');
        return code ?? 1;
      }
      if (o.signal.aborted) {
        await stop(child, exited, o.stopGraceMs);
        return 0;
      }
      // Bounded by the poll period: a sidecar that hangs must not keep the launcher from seeing etcd exit.
      const now = await call(o, 'GET', '/initialize', Math.max(o.pollMs, 1_000)).catch(() => undefined);
      if (now?.status === 200 && (JSON.parse(now.text) as InitStatus).stopEtcd) {
        o.log.warn('the sidecar asks for etcd to stop (its data takes part in a recovery): stopping it, then initializing again');
        await stop(child, exited, o.stopGraceMs);
        break;
      }
    }
  }
}
