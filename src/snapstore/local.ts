import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type BigIntStats } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Type, type Static } from '@sinclair/typebox';
import { parseJson } from '../json.js';
import { DigestStream } from './digest.js';
import { legacyMetaFile, metaFile, migrateLegacyMeta } from './local-meta.js';
import { checkObjectName, checkPrefix, RESERVED_META_DIR, RESERVED_TMP_MARK } from './names.js';
import {
  checkVersionedSize,
  ObjectLockedError,
  StoreError,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  type SnapStore,
  type StagedObject,
  type StageOptions,
  type VersionedObject,
  type VersionedPutOptions,
} from './types.js';

/** Checksums and metadata live beside the objects, outside any snapshot folder the anchor lists. */
const META_DIR = RESERVED_META_DIR;
const TMP_MARK = RESERVED_TMP_MARK;
const WRITE_BUFFER = 1 << 20;
/** A lock this old belongs to a holder that crashed or hung: a conditional write takes milliseconds. */
const LOCK_STALE_MS = 30_000;
/** An upload in progress writes its temporary file without pause; one idle this long is a crash's. */
const LEFTOVER_QUIET_MS = 60_000;

const LocalMetaSchema = Type.Object({
  sha256: Type.String(),
  size: Type.Integer({ minimum: 0 }),
  metadata: Type.Record(Type.String(), Type.String()),
  /** Drawn anew by each `putIfVersion`; absent for objects written by `put` or other tools. */
  version: Type.Optional(Type.String()),
  /** Retention asked for at put time (ISO 8601): deletes and overwrites are refused before it. */
  retainUntil: Type.Optional(Type.String()),
});
type LocalMeta = Static<typeof LocalMetaSchema>;

export interface LocalStoreOptions {
  /** How old a lock must be before another process breaks it (default 30 s). */
  lockStaleMs?: number;
}

/** What a lock file holds: enough for another process to tell whether its holder still lives. */
const LockOwnerSchema = Type.Object({ pid: Type.Integer(), host: Type.String(), token: Type.String(), at: Type.String() });
type LockOwner = Static<typeof LockOwnerSchema>;

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
  private readonly lockStaleMs: number;

  constructor(
    private readonly root: string,
    opts: LocalStoreOptions = {},
  ) {
    this.url = `file://${root}`;
    this.lockStaleMs = opts.lockStaleMs ?? LOCK_STALE_MS;
  }

  private path(name: string): string {
    return join(this.root, ...name.split('/'));
  }

  private metaPath(name: string): string {
    return join(this.root, metaFile(name));
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
    const stageOpts: StageOptions = {};
    if (opts.signal) stageOpts.signal = opts.signal;
    if (opts.retainUntil) stageOpts.retainUntil = opts.retainUntil;
    const staged = await this.stage(body, stageOpts, dirname(this.path(name)));
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
        commit: (name, metadata) =>
          this.commit(file, name, { sha256: sent.sha256Hex, size: sent.size, metadata: metadata ?? {}, ...(opts.retainUntil ? { retainUntil: opts.retainUntil.toISOString() } : {}) }),
        discard: () => unlink(file).catch(() => {}),
      };
    } catch (err) {
      if (tmp) await unlink(tmp).catch(() => {});
      throw this.fail(err, 'put');
    }
  }

  private async commit(tmp: string, name: string, meta: LocalMeta): Promise<PutResult> {
    checkObjectName(this.url, name);
    const path = this.path(name);
    try {
      // An overwrite destroys the object as surely as a delete does.
      await this.refuseIfLocked(name, 'overwrite');
      // Checksum first, object second: a crash in between leaves a stray checksum, never an
      // object that cannot be verified.
      const metaPath = this.metaPath(name);
      const metaTmp = await this.writeTemp(metaPath, Readable.from([Buffer.from(JSON.stringify(meta))]));
      await rename(metaTmp, metaPath);
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path);
      await fsync(dirname(path));
      const st = await stat(path);
      const result: PutResult = { name, size: meta.size, lastModified: st.mtime, metadata: meta.metadata, sha256: meta.sha256, verifiedBy: 'size after fsync; sha256 on every read' };
      if (meta.retainUntil) result.retainUntil = new Date(meta.retainUntil);
      return result;
    } catch (err) {
      throw this.fail(err, `put ${name}`);
    }
  }

  private async readMeta(name: string): Promise<LocalMeta | undefined> {
    for (const path of [this.metaPath(name), join(this.root, legacyMetaFile(name))]) {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      const parsed = parseJson(LocalMetaSchema, text);
      if (!parsed.ok) throw new StoreError('failed', this.url, `${name}: its metadata file is unreadable (${parsed.problem}); the object cannot be verified`);
      return parsed.value;
    }
    return undefined;
  }

  /** Throws while the object's recorded retention lasts. */
  private async refuseIfLocked(name: string, what: 'delete' | 'overwrite'): Promise<void> {
    // An unreadable metadata file holds no date to honour; the object's read fails on it anyway.
    const until = (await this.readMeta(name).catch(() => undefined))?.retainUntil;
    if (until === undefined || Date.parse(until) <= Date.now()) return;
    throw new ObjectLockedError(this.url, `${what} ${name}: retained until ${until}`, new Date(until));
  }

  /** Retention is recorded in each object's metadata file and enforced by this class. */
  async checkRetention(): Promise<void> {}

  /** Moves the checksums of an older release's layout where gardener's Local provider ignores them (see local-meta.ts). */
  async migrateMeta(): Promise<number> {
    try {
      return await migrateLegacyMeta(this.root);
    } catch (err) {
      throw this.fail(err, 'move checksums to the current layout');
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
      const info: ObjectInfo = { name, size: st.size, lastModified: st.mtime, metadata: meta?.metadata ?? {} };
      if (meta?.retainUntil) info.retainUntil = new Date(meta.retainUntil);
      return info;
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
    if (selected.length > pageSize) result.nextPageToken = page[page.length - 1];
    return result;
  }

  async delete(name: string): Promise<void> {
    checkObjectName(this.url, name);
    try {
      await this.refuseIfLocked(name, 'delete');
      await rm(this.path(name), { force: true });
      await rm(this.metaPath(name), { force: true });
      await rm(join(this.root, legacyMetaFile(name)), { force: true });
    } catch (err) {
      throw this.fail(err, `delete ${name}`);
    }
  }

  /**
   * Removes temporary files left by a crash mid-upload (they never carry a final name, but they
   * take space). Called when the store is opened. Files written to within `quietMs` are spared:
   * another process sharing the folder may be uploading or about to rename them into place.
   */
  async removeLeftovers(quietMs = LEFTOVER_QUIET_MS): Promise<number> {
    let removed = 0;
    for await (const file of filesUnder(this.root)) {
      if (!basename(file).includes(TMP_MARK)) continue;
      const st = await stat(file).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < quietMs) continue;
      await unlink(file).catch(() => {});
      removed++;
    }
    return removed;
  }

  /**
   * Needs no lock: the meta file (with the version) is renamed into place before the object, so a
   * version is returned only with a body whose sha256 is the one recorded with that version. A body
   * read between the two renames, or left by a writer that crashed between them, no longer matches
   * and gets a version derived from the file itself, which no writer will ever expect: the next
   * conditional write from it fails, and the reader reads again.
   */
  async readVersioned(name: string, opts: { signal?: AbortSignal } = {}): Promise<VersionedObject | undefined> {
    checkObjectName(this.url, name);
    try {
      opts.signal?.throwIfAborted();
      return await this.currentVersioned(name);
    } catch (err) {
      throw this.fail(err, `read ${name}`);
    }
  }

  private async currentVersioned(name: string): Promise<VersionedObject | undefined> {
    let handle;
    try {
      handle = await open(this.path(name), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    let body: Buffer;
    let st: BigIntStats;
    try {
      st = await handle.stat({ bigint: true });
      if (!st.isFile()) return undefined;
      checkVersionedSize(this.url, name, Number(st.size));
      body = await handle.readFile();
    } finally {
      await handle.close();
    }
    const meta = await this.readMeta(name);
    const sha256 = createHash('sha256').update(body).digest('hex');
    if (meta?.version !== undefined && meta.sha256 === sha256 && meta.size === body.length) return { body, version: meta.version };
    // The inode and the mtime in ns change with every rename into place, even for identical bytes.
    const derived = createHash('sha256').update(`${sha256}:${st.ino}:${st.mtimeNs}:${st.size}`).digest('hex');
    return { body, version: `f-${derived.slice(0, 32)}` };
  }

  /**
   * Read, compare and write under an exclusive lock file beside the meta, so writers in several
   * processes sharing the folder (one machine) take turns; the write itself is the same temp file,
   * fsync, rename and folder fsync as `put`.
   */
  async putIfVersion(name: string, body: Buffer, expected: string | undefined, opts: VersionedPutOptions = {}): Promise<string> {
    checkObjectName(this.url, name);
    checkVersionedSize(this.url, name, body.length);
    const path = this.path(name);
    const metaPath = this.metaPath(name);
    let lock: HeldLock | undefined;
    const temps: string[] = [];
    try {
      lock = await this.lock(name, opts.signal);
      const current = (await this.currentVersioned(name))?.version;
      if (current !== expected) {
        throw new StoreError(
          'precondition_failed',
          this.url,
          `put ${name}: expected ${expected === undefined ? 'no object' : `version ${expected}`}, found ${current === undefined ? 'none' : `version ${current}`}`,
        );
      }
      // Time first so versions sort roughly by age when someone reads them in a log.
      const version = `${Date.now().toString(36)}-${randomBytes(9).toString('hex')}`;
      const meta: LocalMeta = { sha256: createHash('sha256').update(body).digest('hex'), size: body.length, metadata: opts.metadata ?? {}, version };
      temps.push(await this.writeTemp(path, Readable.from([body]), undefined, opts.signal));
      temps.push(await this.writeTemp(metaPath, Readable.from([Buffer.from(JSON.stringify(meta))])));
      opts.signal?.throwIfAborted();
      await lock.confirm();
      await rename(temps[1] as string, metaPath);
      await rename(temps[0] as string, path);
      temps.length = 0;
      await fsync(dirname(metaPath));
      await fsync(dirname(path));
      return version;
    } catch (err) {
      for (const t of temps) await unlink(t).catch(() => {});
      throw this.fail(err, `put ${name}`);
    } finally {
      await lock?.release();
    }
  }

  private lockPath(name: string): string {
    return join(this.root, META_DIR, ...name.split('/')) + '.lock';
  }

  private async lock(name: string, signal?: AbortSignal): Promise<HeldLock> {
    const path = this.lockPath(name);
    await mkdir(dirname(path), { recursive: true });
    const owner: LockOwner = { pid: process.pid, host: hostname(), token: randomBytes(12).toString('hex'), at: new Date().toISOString() };
    // Past this, even a live holder would have been broken as stale: something else is wrong.
    const deadline = Date.now() + 2 * this.lockStaleMs + 5_000;
    let delay = 2;
    for (;;) {
      signal?.throwIfAborted();
      try {
        const h = await open(path, 'wx');
        try {
          await h.writeFile(JSON.stringify(owner));
        } catch (err) {
          // An empty lock would hold everyone off for the whole stale age.
          await unlink(path).catch(() => {});
          throw err;
        } finally {
          await h.close();
        }
        return new HeldLock(path, owner.token, this.url, name);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (await this.breakIfStale(path)) continue;
      if (Date.now() > deadline) throw new StoreError('timeout', this.url, `put ${name}: the lock ${path} stayed held for ${2 * this.lockStaleMs} ms`, true);
      await sleep(delay + Math.random() * delay, undefined, signal ? { signal } : {});
      delay = Math.min(delay * 2, 50);
    }
  }

  /**
   * Removes a lock whose holder crashed: dead by its pid (same host only: another host's or another
   * pid namespace's pid means nothing here) or older than the stale age. Two processes could both
   * find the same lock stale; the removal runs under a second exclusive file and only if the lock is
   * still the one judged stale, so neither removes a fresh lock the other just took. Returns whether
   * the lock is gone.
   */
  private async breakIfStale(path: string): Promise<boolean> {
    const seen = await readLock(path);
    if (!seen) return true;
    const dead = seen.owner !== undefined && seen.owner.host === hostname() && !isAlive(seen.owner.pid);
    if (!dead && Date.now() - seen.mtimeMs <= this.lockStaleMs) return false;
    const guardPath = `${path}.break`;
    let guard;
    try {
      guard = await open(guardPath, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A breaker holds the guard for microseconds; one this old crashed while holding it.
      const g = await stat(guardPath).catch(() => undefined);
      if (g && Date.now() - g.mtimeMs > this.lockStaleMs) await unlink(guardPath).catch(() => {});
      return false;
    }
    try {
      const again = await readLock(path);
      if (!again) return true;
      if (again.raw !== seen.raw || again.mtimeMs !== seen.mtimeMs) return false;
      await unlink(path);
      return true;
    } finally {
      await guard.close();
      await unlink(guardPath).catch(() => {});
    }
  }

  async close(): Promise<void> {}
}

/** A lock taken by this process; `confirm` and `release` touch it only while it is still ours. */
class HeldLock {
  constructor(
    private readonly path: string,
    private readonly token: string,
    private readonly store: string,
    private readonly name: string,
  ) {}

  private async ours(): Promise<boolean> {
    return (await readLock(this.path))?.owner?.token === this.token;
  }

  /** Just before the write lands: a holder that stalled past the stale age may have lost the lock. */
  async confirm(): Promise<void> {
    if (!(await this.ours())) throw new StoreError('failed', this.store, `put ${this.name}: the lock was broken as stale before the write; nothing was written`, true);
  }

  async release(): Promise<void> {
    if (await this.ours().catch(() => false)) await unlink(this.path).catch(() => {});
  }
}

async function readLock(path: string): Promise<{ raw: string; owner: LockOwner | undefined; mtimeMs: number } | undefined> {
  try {
    const st = await stat(path);
    const raw = await readFile(path, 'utf8');
    // Empty or cut short: its holder is between open and write, or died there; only age tells.
    const parsed = parseJson(LockOwnerSchema, raw);
    const owner = parsed.ok ? parsed.value : undefined;
    return { raw, owner, mtimeMs: st.mtimeMs };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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
