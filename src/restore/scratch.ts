/**
 * Scratch dirs of restores, and what a killed restore leaves in them: its files and, since a
 * SIGKILLed node process takes no child with it, possibly its temporary etcd still running.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.js';

const OWNER_FILE = 'owner.json';

interface Owner {
  /** The restoring process. */
  pid: number;
  /** Its temporary etcd, once started. */
  etcdPid?: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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
  const owner: Owner = { pid: process.pid };
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
  for (const name of names) {
    if (!prefixes.some((p) => name.startsWith(p))) continue;
    const dir = join(root, name);
    let owner: Owner | undefined;
    try {
      owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Owner;
    } catch {
      owner = undefined;
    }
    if (owner && alive(owner.pid)) continue;
    if (owner?.etcdPid !== undefined && (await isEtcdOf(owner.etcdPid, dir))) {
      log.warn({ pid: owner.etcdPid, dir }, 'killing the temporary etcd of an interrupted restore');
      process.kill(owner.etcdPid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
    removed++;
  }
  return removed;
}
