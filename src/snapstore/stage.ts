import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream } from './digest.js';
import { StoreError, type PutOptions, type SnapStore, type StagedObject, type StageOptions } from './types.js';

const SPOOL_MARK = 'ebs-spool-';

/**
 * Stages bytes whose name is not known yet. A store that can rename for free (a folder) stages in
 * place; a cloud store gets a local spool file, uploaded under its name at `commit` (S3 and GCS
 * fix an object's name when its upload starts, and a server-side copy would double the cost).
 */
export async function stageObject(store: SnapStore, body: Readable, opts: StageOptions & { spoolDir: string }): Promise<StagedObject> {
  if (store.stage) {
    const { spoolDir: _, ...stageOpts } = opts;
    return store.stage(body, stageOpts);
  }
  await mkdir(opts.spoolDir, { recursive: true });
  const file = join(opts.spoolDir, `${SPOOL_MARK}${randomBytes(6).toString('hex')}`);
  const digest = new DigestStream();
  try {
    await pipeline(body, digest, createWriteStream(file, { flags: 'wx' }), opts.signal ? { signal: opts.signal } : {});
  } catch (err) {
    await unlink(file).catch(() => {});
    if (err instanceof StoreError) throw err;
    throw new StoreError((err as Error).name === 'AbortError' ? 'aborted' : 'failed', store.url, `spooling to ${opts.spoolDir}: ${(err as Error).message}`, false, { cause: err });
  }
  const { size, sha256Hex } = digest.result;
  return {
    size,
    sha256: sha256Hex,
    async commit(name, metadata) {
      const putOpts: PutOptions = {};
      if (metadata) putOpts.metadata = metadata;
      if (opts.retainUntil) putOpts.retainUntil = opts.retainUntil;
      const result = await store.put(name, createReadStream(file), putOpts);
      if (result.sha256 !== sha256Hex) throw new StoreError('checksum_mismatch', store.url, `put ${name}: the spool file changed while it was uploaded`);
      await unlink(file).catch(() => {});
      return result;
    },
    discard: () => unlink(file).catch(() => {}),
  };
}

/** Removes spool files a crash left behind; they never carry a snapshot name. */
export async function removeSpoolLeftovers(spoolDir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(spoolDir);
  } catch {
    return 0;
  }
  const stale = names.filter((n) => n.startsWith(SPOOL_MARK));
  await Promise.all(stale.map((n) => unlink(join(spoolDir, n)).catch(() => {})));
  return stale.length;
}
