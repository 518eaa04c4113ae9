import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream } from './digest.js';
import { checkObjectName, checkPrefix, RESERVED_META_DIR, RESERVED_TMP_MARK } from './names.js';
import { StoreError, type ListOptions, type ListPage, type ObjectInfo, type PutOptions, type PutResult, type SnapStore, type StagedObject, type StageOptions } from './types.js';

/** Checksums and metadata live beside the objects, outside any snapshot folder the anchor lists. */
const META_DIR = RESERVED_META_DIR;
const TMP_MARK = RESERVED_TMP_MARK;
const WRITE_BUFFER = 1 << 20;

interface LocalMeta {
  sha256: string;
  size: number;
  metadata: Record<string, string>;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * A folder as an object store (`file:///path`). Objects are written to a temporary name in their
 * own folder, fsynced, checked, then renamed into place, so a crash or a failed upload never leaves
 * a partial object under its final name. The sha256 recorded beside each object is checked on read.
 */
export class LocalStore implements SnapStore {
  readonly url: string;

  constructor(private readonly root: string) {
    this.url = `file://${root}`;
  }

  private path(name: string): string {
    return join(this.root, ...name.split('/'));
  }

  private metaPath(name: string): string {
    return join(this.root, META_DIR, ...name.split('/')) + '.json';
  }

  private tempPath(path: string): string {
    return join(dirname(path), `.${basename(path)}${TMP_MARK}${randomBytes(6).toString('hex')}`);
  }

  private fail(err: unknown, what: string): StoreError {
    if (err instanceof StoreError) return err;
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') return new StoreError('aborted', this.url, `${what}: aborted`, false, { cause: err });
    if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') return new StoreError('access_denied', this.url, `${what}: ${e.message}`, false, { cause: err });
    return new StoreError('failed', this.url, `${what}: ${e.message}`, false, { cause: err });
  }

  /**
   * Writes a file under a temporary name in the target's folder, through `digest` when given, and
   * fsyncs it; returns that name.
   */
  private async writeTemp(path: string, body: Readable, digest?: DigestStream, signal?: AbortSignal): Promise<string> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = this.tempPath(path);
    // A deep write buffer lets fs batch chunks into one writev instead of a round trip per chunk.
    const file = createWriteStream(tmp, { flags: 'wx', highWaterMark: WRITE_BUFFER });
    const options = signal ? { signal } : {};
    try {
      await (digest ? pipeline(body, digest, file, options) : pipeline(body, file, options));
      await fsync(tmp);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    return tmp;
  }

  async put(name: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    checkObjectName(this.url, name);
    const staged = await this.stage(body, opts.signal ? { signal: opts.signal } : {}, dirname(this.path(name)));
    try {
      return await staged.commit(name, opts.metadata);
    } catch (err) {
      await staged.discard();
      throw err;
    }
  }

  /**
   * Writes the body to a temporary file (in `dir`, by default the store's root: one filesystem, so
   * the final rename is atomic), fsyncs it and checks its size. The sha256 of the bytes written is
   * recorded beside the object and checked on every read. (Reading the file back here would read the
   * page cache, not the disk, and cost a third of a full snapshot's time.)
   */
  async stage(body: Readable, opts: StageOptions = {}, dir = this.root): Promise<StagedObject> {
    let tmp: string | undefined;
    try {
      const digest = opts.digest ? undefined : new DigestStream();
      tmp = await this.writeTemp(join(dir, 'staged'), body, digest, opts.signal);
      const sent = digest ? digest.result : opts.digest?.();
      if (!sent) throw new StoreError('failed', this.url, 'the body ended without its digest');
      const onDisk = (await stat(tmp)).size;
      if (onDisk !== sent.size) throw new StoreError('checksum_mismatch', this.url, `the file on disk holds ${onDisk} bytes, ${sent.size} were sent`);
      const file = tmp;
      return {
        size: sent.size,
        sha256: sent.sha256Hex,
        commit: (name, metadata) => this.commit(file, name, sent.sha256Hex, sent.size, metadata ?? {}),
        discard: () => unlink(file).catch(() => {}),
      };
    } catch (err) {
      if (tmp) await unlink(tmp).catch(() => {});
      throw this.fail(err, 'put');
    }
  }

  private async commit(tmp: string, name: string, sha256: string, size: number, metadata: Record<string, string>): Promise<PutResult> {
    checkObjectName(this.url, name);
    const path = this.path(name);
    try {
      const meta: LocalMeta = { sha256, size, metadata };
      // Checksum first, object second: a crash in between leaves a stray checksum, never an
      // object that cannot be verified.
      const metaPath = this.metaPath(name);
      const metaTmp = await this.writeTemp(metaPath, Readable.from([Buffer.from(JSON.stringify(meta))]));
      await rename(metaTmp, metaPath);
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path);
      await fsync(dirname(path));
      const st = await stat(path);
      return { name, size, lastModified: st.mtime, metadata, sha256, verifiedBy: 'size after fsync; sha256 on every read' };
    } catch (err) {
      throw this.fail(err, `put ${name}`);
    }
  }

  private async readMeta(name: string): Promise<LocalMeta | undefined> {
    try {
      return JSON.parse(await readFile(this.metaPath(name), 'utf8')) as LocalMeta;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async get(name: string, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
    checkObjectName(this.url, name);
    const path = this.path(name);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      if (isNotFound(err)) throw new StoreError('not_found', this.url, `get ${name}: no such object`);
      throw this.fail(err, `get ${name}`);
    }
    const meta = await this.readMeta(name);
    if (meta && meta.size !== size) {
      throw new StoreError('checksum_mismatch', this.url, `get ${name}: object is ${size} bytes, ${meta.size} were stored`);
    }
    const source = createReadStream(path, opts.signal ? { signal: opts.signal } : {});
    // Objects written by another tool (the anchor writes the same layout) carry no recorded
    // checksum; their content is still checked by the snapshot format's own sha256.
    if (!meta) return source;
    const check = new DigestStream({
      onEnd: (d) =>
        d.sha256Hex === meta.sha256 ? undefined : new StoreError('checksum_mismatch', this.url, `get ${name}: sha256 ${d.sha256Hex} does not match the ${meta.sha256} recorded at upload`),
    });
    source.on('error', (err) => check.destroy(this.fail(err, `get ${name}`)));
    return source.pipe(check);
  }

  async head(name: string): Promise<ObjectInfo | undefined> {
    checkObjectName(this.url, name);
    try {
      const st = await stat(this.path(name));
      if (!st.isFile()) return undefined;
      const meta = await this.readMeta(name);
      return { name, size: st.size, lastModified: st.mtime, metadata: meta?.metadata ?? {} };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.fail(err, `head ${name}`);
    }
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    checkPrefix(this.url, prefix);
    const pageSize = opts.pageSize ?? 1000;
    // Walk only the folder the prefix points into.
    const startDir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const names: string[] = [];
    const metaDir = join(this.root, META_DIR);
    try {
      for await (const file of filesUnder(join(this.root, ...startDir.split('/').filter(Boolean)), metaDir)) {
        if (!basename(file).includes(TMP_MARK)) names.push(relative(this.root, file).split(sep).join('/'));
      }
    } catch (err) {
      throw this.fail(err, `list ${prefix}`);
    }
    const selected = names.filter((n) => n.startsWith(prefix) && (opts.pageToken === undefined || n > opts.pageToken)).sort();
    const page = selected.slice(0, pageSize);
    let objects: ObjectInfo[];
    try {
      objects = await Promise.all(
        page.map(async (name) => {
          const st = await stat(this.path(name));
          return { name, size: st.size, lastModified: st.mtime, metadata: {} };
        }),
      );
    } catch (err) {
      // An object deleted between the walk and its stat: list again rather than return a hole.
      if (isNotFound(err)) return this.list(prefix, opts);
      throw this.fail(err, `list ${prefix}`);
    }
    const result: ListPage = { objects };
    if (selected.length > pageSize) result.nextPageToken = page[page.length - 1] as string;
    return result;
  }

  async delete(name: string): Promise<void> {
    checkObjectName(this.url, name);
    try {
      await rm(this.path(name), { force: true });
      await rm(this.metaPath(name), { force: true });
    } catch (err) {
      throw this.fail(err, `delete ${name}`);
    }
  }

  /**
   * Removes temporary files left by a crash mid-upload (they never carry a final name, but they
   * take space). Called when the store is opened.
   */
  async removeLeftovers(): Promise<number> {
    let removed = 0;
    for await (const file of filesUnder(this.root)) {
      if (!basename(file).includes(TMP_MARK)) continue;
      await unlink(file).catch(() => {});
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {}
}

/** Flushes a file or a folder (so a rename in it survives a crash) to disk. */
async function fsync(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Every file below `dir` (none when it does not exist), leaving out the folder `skip`. */
async function* filesUnder(dir: string, skip?: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory() && full !== skip) yield* filesUnder(full, skip);
    else if (e.isFile()) yield full;
  }
}
