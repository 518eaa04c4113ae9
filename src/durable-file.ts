/**
 * Files that must survive a power cut whole or not at all (etcd's config, the launcher's copy of
 * it): written to a temporary name, fsynced, renamed over the old one, and the folder fsynced so
 * the rename itself is on disk. A reader sees the old file or the new one, never half of one.
 */
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** fsync of a file or a folder (a folder's fsync makes its renames and new entries durable). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function writeFileDurably(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncPath(dirname(file));
}
