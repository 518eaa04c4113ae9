/**
 * Where the local store keeps each object's checksum file: under `.ebs-meta/`, the object's name with
 * every folder given a `.d` suffix (`v2/Full-…gz` -> `.ebs-meta/v2.d/Full-…gz.json`).
 *
 * Why not the name as it is: gardener's etcd-backup-restore, with its `Local` provider pointed at
 * the same folder, walks every file below it and takes any path containing `v2/` (or `v1/`) for a
 * snapshot. Checksums kept at `.ebs-meta/v2/<snapshot>.json` were listed as a second copy of each
 * snapshot, and `etcdbrctl restore` failed decompressing a JSON file. No folder here ends in `v1` or
 * `v2`, so gardener ignores them (it logs each as an invalid snapshot name).
 */
import { mkdir, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { RESERVED_META_DIR, RESERVED_TMP_MARK } from './names.js';

const FOLDER_SUFFIX = '.d';

/** The checksum file of `name`, relative to the store's root. */
export function metaFile(name: string): string {
  const segments = name.split('/');
  const base = segments.pop() as string;
  return join(RESERVED_META_DIR, ...segments.map((s) => s + FOLDER_SUFFIX), `${base}.json`);
}

/** Where releases before this layout kept it: still read, so their stores keep their checksums. */
export function legacyMetaFile(name: string): string {
  return join(RESERVED_META_DIR, ...name.split('/')) + '.json';
}

/**
 * Moves checksum files of the old layout to the new one (a file already there wins), so a folder
 * written by an older release becomes readable by gardener. Returns how many were moved.
 */
export async function migrateLegacyMeta(root: string): Promise<number> {
  const metaRoot = join(root, RESERVED_META_DIR);
  let moved = 0;
  for await (const file of jsonFilesUnder(metaRoot)) {
    const folders = relative(metaRoot, dirname(file)).split(sep).filter(Boolean);
    if (folders.every((f) => f.endsWith(FOLDER_SUFFIX))) continue;
    const name = relative(metaRoot, file).split(sep).join('/').slice(0, -'.json'.length);
    const target = join(root, metaFile(name));
    if (await exists(target)) {
      await unlink(file).catch(() => {});
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    await rename(file, target);
    moved++;
  }
  if (moved > 0) await removeEmptyFolders(metaRoot);
  return moved;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Checksum files only: locks and uploads in progress stay where their writers expect them. */
async function* jsonFilesUnder(dir: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) yield* jsonFilesUnder(full);
    else if (e.isFile() && e.name.endsWith('.json') && !e.name.includes(RESERVED_TMP_MARK)) yield full;
  }
}

/** The old layout's folders, once emptied; a folder still holding a lock or another file stays. */
async function removeEmptyFolders(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await removeEmptyFolders(join(dir, e.name));
  if ((await readdir(dir).catch(() => ['?'])).length === 0) await rmdir(dir).catch(() => {});
}
