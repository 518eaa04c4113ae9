import './reaper.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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

  /**
   * Returns once every thread of the process is stopped: SIGSTOP is delivered asynchronously, and a
   * request sent right after kill() could still meet a server thread not yet stopped (the frozen
   * case once got an answer within 11 ms; a likely cause, not a proven one).
   */
  freeze(): void {
    this.child.kill('SIGSTOP');
    const tasks = `/proc/${this.child.pid}/task`;
    const deadline = Date.now() + 5_000;
    // The state is the field after the command name, which is in parentheses and may hold spaces.
    const state = (stat: string): string | undefined => stat.slice(stat.lastIndexOf(')') + 2)[0];
    const stopped = (): boolean => readdirSync(tasks).every((t) => ['T', 't'].includes(state(readFileSync(`${tasks}/${t}/stat`, 'utf8')) ?? ''));
    while (!stopped()) {
      if (Date.now() > deadline) throw new Error(`${this.name} did not stop within 5 s of SIGSTOP`);
    }
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
