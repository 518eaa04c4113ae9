/**
 * etcd's auth switch (`auth/authEnabled` in the db), read and set in a stopped member's db file.
 *
 * A restore replays deltas into a temporary etcd made from a full snapshot. When the cluster had
 * auth enabled, so has the snapshot, and the temporary etcd refuses every write without a token
 * ("user name is empty", anchor bug #950); the sidecar may hold no credentials at all, or ones that
 * cannot write every key. Auth is switched off in the temporary etcd's db before it starts and
 * switched back on in the db it leaves, before that db becomes a member's data dir or a full
 * snapshot: what comes out has auth exactly as the snapshot had it, users and roles untouched
 * (the replay never writes them), and no credential was needed.
 *
 * The switch is one byte (1 on, 0 off) rewritten in place: the same key, value size and page, so
 * the tree, the free list and the meta pages stay as they are, and bbolt keeps no checksum over
 * data pages (only over its two meta pages, which are not touched).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { BRANCH_PAGE, BUCKET_ELEMENT, BUCKET_HEADER_SIZE, BoltFormatError, ELEMENT_SIZE, LEAF_PAGE, PAGE_HEADER_SIZE, readFileMeta, readU64, type Meta } from './bolt.js';

const AUTH_BUCKET = Buffer.from('auth');
const AUTH_ENABLED_KEY = Buffer.from('authEnabled');
/** Deeper than any db: a cycle in a damaged tree must not loop for ever. */
const MAX_DEPTH = 64;

/** A leaf element found by key: where its value lies in the file, and the value. */
interface Located {
  isBucket: boolean;
  /** The value's first byte, as a file offset. */
  at: number;
  value: Buffer;
}

class BoltFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly meta: Meta,
    private readonly path: string,
  ) {}

  static async open(path: string, writable: boolean): Promise<BoltFile> {
    const fh = await open(path, writable ? 'r+' : 'r');
    try {
      return new BoltFile(fh, await readFileMeta(fh), path);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Page `id` with its overflow pages: the bytes and the file offset they start at. */
  private async page(id: number): Promise<{ bytes: Buffer; at: number }> {
    const size = this.meta.pageSize;
    if (id < 2 || id >= this.meta.pageCount) throw new BoltFormatError(`${this.path}: page ${id} is outside the db's ${this.meta.pageCount} pages`);
    const header = Buffer.alloc(PAGE_HEADER_SIZE);
    await this.fh.read(header, 0, PAGE_HEADER_SIZE, id * size);
    const overflow = header.readUInt32LE(12);
    if (id + overflow >= this.meta.pageCount) throw new BoltFormatError(`${this.path}: page ${id} overflows past the db's end`);
    const bytes = Buffer.alloc((overflow + 1) * size);
    await this.fh.read(bytes, 0, bytes.length, id * size);
    return { bytes, at: id * size };
  }

  /** `key` in the tree rooted at page `root`, descending branch pages by bbolt's rule. */
  async find(root: number, key: Buffer, depth = 0): Promise<Located | undefined> {
    if (depth > MAX_DEPTH) throw new BoltFormatError(`${this.path}: the tree is deeper than ${MAX_DEPTH} pages (a cycle?)`);
    const { bytes, at } = await this.page(root);
    const flags = bytes.readUInt16LE(8);
    if (flags === LEAF_PAGE) return findInLeaf(bytes, 0, at, key);
    if (flags !== BRANCH_PAGE) throw new BoltFormatError(`${this.path}: page ${root} has flags 0x${flags.toString(16)}, neither a branch nor a leaf`);
    // The child for `key` is the last one whose first key is <= key (the first if none is).
    const count = bytes.readUInt16LE(10);
    let child: number | undefined;
    for (let i = 0; i < count; i++) {
      const e = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
      const keyAt = e + bytes.readUInt32LE(e);
      const first = bytes.subarray(keyAt, keyAt + bytes.readUInt32LE(e + 4));
      if (i > 0 && Buffer.compare(first, key) > 0) break;
      child = readU64(bytes, e + 8);
    }
    return child === undefined ? undefined : this.find(child, key, depth + 1);
  }

  /** `key` in the bucket a leaf element holds (its root page, or inline in the element's value). */
  async findInBucket(bucket: Located, key: Buffer): Promise<Located | undefined> {
    if (bucket.value.length < BUCKET_HEADER_SIZE) throw new BoltFormatError(`${this.path}: a bucket value of ${bucket.value.length} bytes`);
    const root = readU64(bucket.value, 0);
    if (root !== 0) return this.find(root, key);
    return findInLeaf(bucket.value, BUCKET_HEADER_SIZE, bucket.at, key);
  }

  async write(at: number, bytes: Buffer): Promise<void> {
    await this.fh.write(bytes, 0, bytes.length, at);
    await this.fh.sync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** `key` among the elements of the leaf page image at `pageAt` of `buf`; `bufAt` is `buf`'s file offset. */
function findInLeaf(buf: Buffer, pageAt: number, bufAt: number, key: Buffer): Located | undefined {
  if (buf.readUInt16LE(pageAt + 8) !== LEAF_PAGE) throw new BoltFormatError('an inline bucket that is not a leaf');
  const count = buf.readUInt16LE(pageAt + 10);
  for (let i = 0; i < count; i++) {
    const e = pageAt + PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
    const keyAt = e + buf.readUInt32LE(e + 4);
    const keySize = buf.readUInt32LE(e + 8);
    const valueSize = buf.readUInt32LE(e + 12);
    if (keyAt + keySize + valueSize > buf.length) throw new BoltFormatError(`leaf element ${i} points outside its page`);
    if (!buf.subarray(keyAt, keyAt + keySize).equals(key)) continue;
    const valueAt = keyAt + keySize;
    return { isBucket: (buf.readUInt32LE(e) & BUCKET_ELEMENT) !== 0, at: bufAt + valueAt, value: buf.subarray(valueAt, valueAt + valueSize) };
  }
  return undefined;
}

/** Where `auth/authEnabled` lies, or undefined when the db never had auth turned on. */
async function locateSwitch(db: BoltFile): Promise<Located | undefined> {
  const bucket = await db.find(db.meta.root, AUTH_BUCKET);
  if (!bucket?.isBucket) return undefined;
  const value = await db.findInBucket(bucket, AUTH_ENABLED_KEY);
  if (!value || value.isBucket) return undefined;
  if (value.value.length !== 1) throw new BoltFormatError(`auth/authEnabled is ${value.value.length} bytes, not 1`);
  return value;
}

/** Whether the stopped member's db at `dbPath` has auth enabled. */
export async function authEnabledIn(dbPath: string): Promise<boolean> {
  const db = await BoltFile.open(dbPath, false);
  try {
    return (await locateSwitch(db))?.value[0] === 1;
  } finally {
    await db.close();
  }
}

/**
 * Sets auth on or off in the db of a stopped member; resolves with whether it was on before. A db
 * without the switch (auth never enabled) is left alone when asked to turn it off, and refused
 * when asked to turn it on: there is no byte to set, and no root user to enable it for.
 */
export async function setAuthEnabled(dbPath: string, enabled: boolean): Promise<boolean> {
  const db = await BoltFile.open(dbPath, true);
  try {
    const at = await locateSwitch(db);
    if (!at) {
      if (enabled) throw new BoltFormatError(`${dbPath}: auth was never enabled in this db, so it cannot be turned back on`);
      return false;
    }
    const was = at.value[0] === 1;
    if (was !== enabled) await db.write(at.at, Buffer.from([enabled ? 1 : 0]));
    return was;
  } finally {
    await db.close();
  }
}
