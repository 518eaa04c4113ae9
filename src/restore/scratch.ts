/**
 * Scratch dirs of restores, and what a killed restore leaves in them: its files and, since a
 * SIGKILLed node process takes no child with it, possibly its temporary etcd still running.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import { Type, type Static } from '@sinclair/typebox';
import { parseJson } from '../json.js';

const OWNER_FILE = 'owner.json';

const OwnerSchema = Type.Object({
  /** The restoring process. */
  pid: Type.Integer(),
  /**
   * When that process started (clock ticks since boot, /proc/<pid>/stat) and on which boot: a pid
   * alone does not tell a previous incarnation from this one, since the sidecar is PID 1 in its
   * container every time it starts. Absent where /proc is not there, and in older records.
   */
  startTime: Type.Optional(Type.String()),
  bootId: Type.Optional(Type.String()),
  /** Its temporary etcd, once started. */
  etcdPid: Type.Optional(Type.Integer()),
});
export type Owner = Static<typeof OwnerSchema>;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/<pid>/stat, counted after the command name, which may hold spaces and parentheses. */
async function startTimeOf(pid: number | 'self'): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

async function bootId(): Promise<string | undefined> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** This process as an owner record names it. */
export async function selfOwner(): Promise<Owner> {
  const [startTime, boot] = await Promise.all([startTimeOf('self'), bootId()]);
  return { pid: process.pid, ...(startTime ? { startTime } : {}), ...(boot ? { bootId: boot } : {}) };
}

/** True while the process that wrote `owner` runs: same pid, and where recorded, same start and boot. */
export async function ownerAlive(owner: Owner, self: Owner): Promise<boolean> {
  if (owner.startTime === undefined) {
    // An older record: this process, which records its start, did not write it, whatever its pid.
    if (owner.pid === self.pid && self.startTime !== undefined) return false;
    return pidAlive(owner.pid);
  }
  if (owner.bootId !== undefined && self.bootId !== undefined && owner.bootId !== self.bootId) return false;
  if (!pidAlive(owner.pid)) return false;
  const now = await startTimeOf(owner.pid);
  // No /proc to ask: the pid is all there is to go by.
  return now === undefined || now === owner.startTime;
}

/** True when `pid` is still the etcd that was started on `dir` (pids are reused). */
async function isEtcdOf(pid: number, dir: string): Promise<boolean> {
  try {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmdline.some((a) => a.startsWith('--data-dir=') && a.includes(dir));
  } catch {
    return false;
  }
}

/** A fresh work dir under `root` whose owner is this process. */
export async function makeWorkDir(root: string, prefix: string): Promise<{ dir: string; noteEtcd(pid: number | undefined): Promise<void> }> {
  const dir = await mkdtemp(join(root, prefix));
  const owner: Owner = await selfOwner();
  await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner));
  return {
    dir,
    noteEtcd: async (pid) => {
      if (pid === undefined) return;
      owner.etcdPid = pid;
      await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner));
    },
  };
}

/**
 * Removes the work dirs of restores whose process is gone, first killing a temporary etcd one of
 * them left running. Work dirs of live restores (a drill beside a restore) are left alone.
 */
export async function removeStaleWorkDirs(root: string, prefixes: readonly string[], log: Logger): Promise<number> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return 0;
  }
  let removed = 0;
  const self = await selfOwner();
  for (const name of names) {
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    const dir = join(root, name);
    // Unreadable or not an owner record (cut short, another release's): its owner is unknown, so gone.
    const text = await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '');
    const parsed = parseJson(OwnerSchema, text);
    const owner: Owner | undefined = parsed.ok ? parsed.value : undefined;
    if (owner && (await ownerAlive(owner, self))) continue;
    if (owner?.etcdPid !== undefined && (await isEtcdOf(owner.etcdPid, dir))) {
      log.warn({ pid: owner.etcdPid, dir }, 'killing the temporary etcd of an interrupted restore');
      process.kill(owner.etcdPid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
    removed++;
  }
  return removed;
}
