/**
 * Putting a restored data dir in place so that a crash at any moment leaves either the old data dir
 * or the complete new one. Linux cannot rename a directory over a non-empty one, so the swap is two
 * renames, and `<dir>.old` marks the moment between them: it exists only once `<dir>.part` is
 * complete, so whoever finds it finishes the swap.
 */
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const partDir = (dataDir: string): string => `${dataDir}.part`;
export const oldDir = (dataDir: string): string => `${dataDir}.old`;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** True when `dir` is missing or an empty directory; throws when it is a file. */
export async function isMissingOrEmpty(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

/** fsync of a directory or a file (opened read-only: Linux syncs it all the same). */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsyncs every file and directory under `dir`, then `dir`. `snapshot restore` (etcdctl 3.4,
 * etcdutl 3.6, under strace) fdatasyncs the db and the WAL and fsyncs member/ after renaming the
 * WAL dir into it, but not member/snap/, which holds the db's entry, nor the data dir itself; and
 * the data dir is about to become the member's only copy of its data.
 */
export async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(path);
    else if (entry.isFile()) await fsyncDir(path);
  }
  await fsyncDir(dir);
}

/**
 * Completes or undoes a swap a crash interrupted; call before looking at the data dir. Returns
 * what it did, for the log.
 */
export async function finishInterruptedSwap(dataDir: string): Promise<'none' | 'completed' | 'rolled-back' | 'cleaned'> {
  const [hasDir, hasPart, hasOld] = await Promise.all([exists(dataDir), exists(partDir(dataDir)), exists(oldDir(dataDir))]);
  if (hasOld && !hasDir) {
    // Crashed between the two renames: the new data dir is complete (that is why .old exists).
    if (hasPart) {
      await rename(partDir(dataDir), dataDir);
      await rm(oldDir(dataDir), { recursive: true, force: true });
      await fsyncDir(dirname(dataDir));
      return 'completed';
    }
    await rename(oldDir(dataDir), dataDir);
    await fsyncDir(dirname(dataDir));
    return 'rolled-back';
  }
  if (hasOld || hasPart) {
    // .old beside a data dir: the swap was done, only its cleanup was cut. .part alone: a restore
    // died before it was complete; the data dir was never touched.
    await rm(oldDir(dataDir), { recursive: true, force: true });
    await rm(partDir(dataDir), { recursive: true, force: true });
    return 'cleaned';
  }
  return 'none';
}

/**
 * Moves the complete `<dataDir>.part` to `dataDir`, replacing what was there (only if allowed):
 * every file and directory of it fsynced first, the parent directory after the renames.
 */
export async function swapIn(dataDir: string, replaceExisting: boolean): Promise<void> {
  const part = partDir(dataDir);
  await mkdir(dirname(dataDir), { recursive: true });
  // Durable before it takes the old data dir's place: the temporary etcd wrote without fsync.
  await fsyncTree(part);
  if (await exists(dataDir)) {
    if (await isMissingOrEmpty(dataDir)) {
      await rm(dataDir, { recursive: true });
    } else {
      if (!replaceExisting) throw new Error(`${dataDir} is not empty`);
      await rename(dataDir, oldDir(dataDir));
    }
  }
  await rename(part, dataDir);
  await fsyncDir(dirname(dataDir));
  await rm(oldDir(dataDir), { recursive: true, force: true });
}
