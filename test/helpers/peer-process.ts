import './reaper.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { freezeProcess } from '../../src/etcd/process.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A peer binary scripts/peers.sh builds, or why a test that needs it must skip. */
export function peerBinary(dir: string, file: string): { path: string } | { skip: string } {
  const path = join(ROOT, '.peers', dir, file);
  if (existsSync(path)) return { path };
  return { skip: `.peers/${dir}/${file} is missing: run npm run peers to build it` };
}

/**
 * A store server in a child process: started, waited for until `ready` answers, frozen (SIGSTOP)
 * as a black hole is, and killed. Its output goes to a buffer shown when it fails to start; a
 * pipe nobody drained would block it.
 */
export class PeerProcess {
  private output = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly name: string,
  ) {
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  static async start(bin: string, args: string[], opts: { ready: () => Promise<boolean>; env?: Record<string, string>; timeoutMs?: number }): Promise<PeerProcess> {
    const child = spawn(bin, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const peer = new PeerProcess(child, bin.split('/').pop() ?? bin);
    const kill = (): void => void child.kill('SIGKILL');
    process.once('exit', kill);
    child.once('exit', () => process.removeListener('exit', kill));
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      if (await opts.ready().catch(() => false)) return peer;
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        await peer.stop();
        throw new Error(`${peer.name} did not start (exit ${child.exitCode ?? child.signalCode}): ${peer.output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGSTOP, returning once every thread of the process is stopped (freezeProcess). */
  freeze(): void {
    if (this.child.pid !== undefined) freezeProcess(this.child.pid, this.name);
  }

  thaw(): void {
    this.child.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
    await exited;
  }
}
