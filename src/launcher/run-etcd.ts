/**
 * `run-etcd`: runs etcd the way the sidecar decides, for as long as the container lives. It asks
 * the sidecar to initialize (`POST /initialize`), starts etcd with the config it serves (`GET
 * /config`), and stops etcd when the sidecar says so (`stopEtcd` in `GET /initialize`: the cluster
 * lost quorum for good and this member's data must take part in a recovery), then starts over. An
 * init container alone cannot do this: it runs once per pod, while a recovery can need the etcd of
 * a pod that never restarted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileDurably } from '../durable-file.js';
import { parseJson } from '../json.js';
import type { Logger } from '../logger.js';
import { InitializeBody } from '../server/schemas.js';

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

type InitStatus = InitializeBody;

class SidecarSaid extends Error {}

/** The sidecar's initialization state in an answer, checked against the API's own schema. */
function initStatusOf(text: string): InitStatus {
  const parsed = parseJson(InitializeBody, text);
  if (!parsed.ok) throw new SidecarSaid(`the sidecar's answer is not an initialization state (${parsed.problem}): ${text.slice(0, 200)}`);
  return parsed.value;
}

/** `POST /initialize?wait=30` holds the answer up to 30 s; anything else answers at once. */
async function call(o: LauncherOptions, method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = o.token ? { authorization: `Bearer ${o.token}` } : {};
  const res = await fetch(new URL(path, o.sidecarURL), { method, headers, signal: AbortSignal.any([o.signal, AbortSignal.timeout(timeoutMs)]) });
  return { status: res.status, text: await res.text() };
}

/** Whether a GET /initialize answer asks for etcd to stop; an answer that is not a state asks nothing. */
function stopRequested(text: string): boolean {
  const parsed = parseJson(InitializeBody, text);
  return parsed.ok && parsed.value.stopEtcd === true;
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
      if (res.status !== 200 && res.status !== 202 && res.status !== 500) throw new SidecarSaid(`POST /initialize answered ${res.status}: ${res.text}`);
      const body = initStatusOf(res.text);
      if (res.status === 200) return body;
      if (res.status === 500) throw new SidecarSaid(`initialization failed: ${body.error ?? res.text}`);
      o.log.info({ decision: body.decision, reason: body.reason }, 'the sidecar is still initializing');
    }
    await sleep(o.pollMs, undefined, { signal: o.signal });
  }
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
    await writeFileDurably(o.configFile, config.text);
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
      if (now?.status === 200 && stopRequested(now.text)) {
        o.log.warn('the sidecar asks for etcd to stop (its data takes part in a recovery): stopping it, then initializing again');
        await stop(child, exited, o.stopGraceMs);
        break;
      }
    }
  }
}
