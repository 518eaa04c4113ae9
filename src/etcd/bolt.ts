import { open, type FileHandle } from 'node:fs/promises';

/**
 * What an etcd backend db (a bbolt file) says about the store it holds, read the way etcd itself
 * will read it, so a backup can be labelled with the revision a restore will really produce.
 */
export interface BoltFacts {
  /**
   * The current revision etcd's mvcc store will have after loading this db. etcd 3.4's
   * `store.restore()` (mvcc/kvstore.go) starts at 1, ranges the "key" bucket over revisions
   * [1_0, MaxInt64_MaxInt64) keeping the main revision of the last key it sees, then raises the
   * result to finishedCompactRev when that is higher (a compaction may have removed every key at or
   * below it). So: max(1, main revision of the largest key in "key", finishedCompactRev's main).
   */
  revision: number;
  /** Main revision of meta/finishedCompactRev; 0 when the db was never compacted. */
  compactRevision: number;
  /** meta/consistent_index: the raft index of the last entry applied to this db; 0n when absent. */
  consistentIndex: bigint;
  /** meta/storageVersion ("3.6.0"): etcd 3.6 and later write it once the cluster's version is known. */
  storageVersion?: string;
  /** meta/term exists: etcd 3.5 and later write it beside consistent_index; 3.4 never does. */
  hasTerm: boolean;
  /** Entries in the "key" bucket: one per stored revision, tombstones included (not live keys). */
  keyCount: number;
  pageSize: number;
  /** The meta page's pgid high-water mark: the db is pageCount × pageSize bytes. */
  pageCount: number;
}

export class BoltFormatError extends Error {
  override name = 'BoltFormatError';
}

// bbolt's on-disk layout (bbolt v1.3.6, the one etcd 3.4 uses); every integer is little-endian
// except etcd's own keys and values, which are big-endian.
export const PAGE_HEADER_SIZE = 16;
export const ELEMENT_SIZE = 16;
const META_SIZE = 64;
const META_CHECKSUM_AT = 56;
const MAGIC = 0xed0cdaed;
const VERSION = 2;
export const BRANCH_PAGE = 0x01;
export const LEAF_PAGE = 0x02;
export const BUCKET_ELEMENT = 0x01;
export const BUCKET_HEADER_SIZE = 16;
const REVISION_SIZE = 17;

// bbolt takes the page size from meta 0, and guesses when meta 0 is unreadable; these are the page
// sizes of the platforms etcd runs on, most likely first.
const GUESSED_PAGE_SIZES = [4096, 16384, 65536, 8192, 32768, 2048, 1024];
const MIN_PAGE_SIZE = 1024;
const MAX_PAGE_SIZE = 1 << 20;

// What the per-page summary knows about a page id.
const UNSEEN = 0;
const BRANCH = 1;
const LEAF = 2;
const NOT_A_NODE = 3; // meta, freelist, the inside of an overflowed page, or garbage
const BROKEN = 4; // claims to be a branch or leaf but its elements make no sense

export interface Meta {
  pageSize: number;
  root: number;
  pageCount: number;
  txid: bigint;
}

/** A bucket as its parent's leaf stores it: a root page id, or the whole bucket inline. */
type BucketRef = { root: number } | { inline: InlineLeaf } | { broken: string };

interface InlineLeaf {
  count: number;
  lastMain: number;
  found: Found[];
}

/** The few leaf elements etcd's facts come from, whichever bucket they turn out to be in. */
type Found = { name: 'key' | 'meta'; bucket: BucketRef } | { name: MetaValue; value: Buffer; size: number };

/** The meta bucket's values read: the consistent index and compaction, and what tells the writer's release. */
type MetaValue = 'consistent_index' | 'finishedCompactRev' | 'term' | 'storageVersion';
const META_VALUES: ReadonlySet<string> = new Set<MetaValue>(['consistent_index', 'finishedCompactRev', 'term', 'storageVersion']);
const META_VALUE_SIZES: ReadonlySet<number> = new Set([...META_VALUES].map((n) => n.length));

type Fetch = (start: number, end: number, use: (bytes: Buffer) => void) => void;

/** Where a leaf's facts go; `page` is the leaf's page id (0 for an inline bucket's). */
interface LeafSink {
  lastMain(page: number, main: number): void;
  found(page: number, item: Found): void;
}

/** A byte range the scanner needs whole but that the stream has only partly delivered so far. */
interface Want {
  start: number;
  end: number;
  bytes: Buffer;
  use: (bytes: Buffer) => void;
}

const EMPTY = Buffer.alloc(0);
const READ_SIZE = 1 << 20;

/**
 * Reads a bbolt db as it streams by, in page order, keeping only a per-page summary (about 11 bytes
 * a page: under 3 MB per GB at 4 KB pages) and no page contents. Which pages belong to which
 * bucket is only known once the tree is walked from the meta page's root, and a db file also holds
 * free and stale pages, so every page that looks like a branch or leaf is summarised and `finish()`
 * trusts only those reachable from the root.
 *
 * `write()` never throws for a malformed db (it is called from stream handlers); the first problem
 * is kept and `finish()` throws it. A chunk may be reused by the caller once `write()` returns.
 */
export class BoltScanner {
  private head: Buffer[] = [];
  private headBytes = 0;
  private headNeeded = PAGE_HEADER_SIZE + META_SIZE;

  private meta: Meta | undefined;
  private pageSize = 0;
  private end = 0;
  private received = 0;
  private failure: BoltFormatError | undefined;
  private finished = false;

  // Per page id, grown as pages arrive. For a leaf, aux is the main revision of its last key (NaN
  // if it has none or it is not revision-shaped); for a branch, where its children start in
  // `children`. count is the element count in both cases.
  private kind = new Uint8Array(0);
  private count = new Uint16Array(0);
  private aux = new Float64Array(0);
  private children = new Float64Array(1024);
  private childCount = 0;
  private readonly found = new Map<number, Found[]>();
  private readonly broken = new Map<number, string>();

  private pending: Want[] = [];
  private chunk: Buffer = EMPTY;
  private chunkAt = 0;
  private readonly fetch: Fetch = (start, end, use) => this.want(start, end, use);
  // One sink for all pages: closures made per page cost more than the parsing itself.
  private readonly sink: LeafSink = {
    lastMain: (page, main) => {
      this.aux[page] = main;
    },
    found: (page, item) => {
      const list = this.found.get(page);
      if (list) list.push(item);
      else this.found.set(page, [item]);
    },
  };

  /** pageCount × pageSize once the meta pages have streamed by: bytes after that are ignored. */
  get dbSize(): number | undefined {
    return this.meta === undefined ? undefined : this.end;
  }

  write(chunk: Buffer): void {
    if (this.finished) throw new Error('BoltScanner.write after finish');
    if (this.failure !== undefined || chunk.length === 0) return;
    try {
      let rest = chunk;
      while (this.meta === undefined && rest.length > 0) {
        // The meta pages are needed whole before any other page can be read, and the caller may
        // reuse its buffer: copy just them.
        const take = Math.min(rest.length, this.headNeeded - this.headBytes);
        this.head.push(Buffer.from(rest.subarray(0, take)));
        this.headBytes += take;
        rest = rest.subarray(take);
        if (this.headBytes >= this.headNeeded) this.tryBegin();
      }
      if (this.meta !== undefined && rest.length > 0) this.feed(rest);
    } catch (err) {
      if (!(err instanceof BoltFormatError)) throw err;
      this.failure = err;
    }
  }

  finish(): BoltFacts {
    if (this.finished) throw new Error('BoltScanner.finish called twice');
    this.finished = true;
    if (this.meta === undefined && this.failure === undefined) {
      try {
        this.begin(Buffer.concat(this.head));
      } catch (err) {
        if (!(err instanceof BoltFormatError)) throw err;
        this.failure = err;
      }
    }
    if (this.failure !== undefined) throw this.failure;
    if (this.received < this.end) {
      throw new BoltFormatError(`truncated: the meta page says the db is ${this.end} bytes (${this.end / this.pageSize} pages of ${this.pageSize}), but only ${this.received} bytes arrived`);
    }
    return this.facts(this.meta as Meta); // begin() set it or failed
  }

  /** Waits for meta 0 to learn the page size, then for both meta pages, before reading any page. */
  private tryBegin(): void {
    const head = Buffer.concat(this.head);
    this.head = [head];
    const meta0 = readMeta(head, 0);
    this.headNeeded = typeof meta0 === 'string' ? GUESSED_PAGE_SIZES.reduce((a, b) => Math.max(a, b)) + PAGE_HEADER_SIZE + META_SIZE : 2 * meta0.pageSize;
    if (head.length >= this.headNeeded) this.begin(head);
  }

  private begin(head: Buffer): void {
    this.head = [];
    if (head.length < PAGE_HEADER_SIZE + META_SIZE) throw new BoltFormatError(`truncated: ${head.length} bytes cannot even hold a bbolt meta page`);
    const { meta } = chooseMeta(head);
    this.meta = meta;
    this.pageSize = meta.pageSize;
    this.end = meta.pageCount * meta.pageSize;
    this.feed(head);
  }

  private feed(data: Buffer): void {
    const at = this.received;
    this.received += data.length;
    if (at >= this.end) return;
    const chunk = at + data.length > this.end ? data.subarray(0, this.end - at) : data;
    const chunkEnd = at + chunk.length;
    this.chunk = chunk;
    this.chunkAt = at;
    if (this.pending.length > 0) {
      const waiting = this.pending;
      this.pending = [];
      for (const w of waiting) this.progress(w, chunkEnd);
    }
    const size = this.pageSize;
    // Every page slot gets its header read, even inside what looks like an overflowed page: that
    // page may be stale, and the slot a live page.
    for (let id = Math.max(2, Math.ceil(at / size)); id * size < chunkEnd; id++) {
      this.reserve(id);
      const start = id * size;
      if (start + PAGE_HEADER_SIZE <= chunkEnd) this.onHeader(id, chunk.subarray(start - at, start - at + PAGE_HEADER_SIZE));
      else this.want(start, start + PAGE_HEADER_SIZE, (h) => this.onHeader(id, h));
    }
    this.chunk = EMPTY;
  }

  /** Hands `use` the bytes [start, end) of the stream: now if they are in this chunk, else once they are all in. */
  private want(start: number, end: number, use: (bytes: Buffer) => void): void {
    const chunkEnd = this.chunkAt + this.chunk.length;
    if (start >= this.chunkAt && end <= chunkEnd) {
      use(this.chunk.subarray(start - this.chunkAt, end - this.chunkAt));
      return;
    }
    this.progress({ start, end, bytes: Buffer.allocUnsafe(end - start), use }, chunkEnd);
  }

  private progress(w: Want, chunkEnd: number): void {
    const from = Math.max(w.start, this.chunkAt);
    const to = Math.min(w.end, chunkEnd);
    if (from < to) this.chunk.copy(w.bytes, from - w.start, from - this.chunkAt, to - this.chunkAt);
    if (w.end <= chunkEnd) w.use(w.bytes);
    else this.pending.push(w);
  }

  private reserve(id: number): void {
    if (id < this.kind.length) return;
    const size = Math.min(this.end / this.pageSize, Math.max(1024, this.kind.length * 2, id + 1));
    const kind = new Uint8Array(size);
    const count = new Uint16Array(size);
    const aux = new Float64Array(size);
    kind.set(this.kind);
    count.set(this.count);
    aux.set(this.aux);
    this.kind = kind;
    this.count = count;
    this.aux = aux;
  }

  private onHeader(id: number, h: Buffer): void {
    const flags = h.readUInt16LE(8);
    if (readU64(h, 0) !== id || (flags !== BRANCH_PAGE && flags !== LEAF_PAGE)) {
      this.kind[id] = NOT_A_NODE;
      return;
    }
    const count = h.readUInt16LE(10);
    const overflow = h.readUInt32LE(12);
    if ((id + overflow + 1) * this.pageSize > this.end) {
      this.breakPage(id, `its ${overflow} overflow pages run past the end of the db`);
      return;
    }
    const elementsAt = id * this.pageSize + PAGE_HEADER_SIZE;
    const pageEnd = (id + overflow + 1) * this.pageSize;
    if (elementsAt + count * ELEMENT_SIZE > pageEnd) {
      this.breakPage(id, `${count} elements do not fit in it`);
      return;
    }
    this.count[id] = count;
    if (count === 0) {
      this.kind[id] = flags === BRANCH_PAGE ? BRANCH : LEAF;
      this.aux[id] = flags === BRANCH_PAGE ? this.childCount : NaN;
      return;
    }
    this.want(elementsAt, elementsAt + count * ELEMENT_SIZE, (elements) => (flags === BRANCH_PAGE ? this.onBranch(id, elements) : this.onLeaf(id, elements, elementsAt, pageEnd)));
  }

  private onBranch(id: number, elements: Buffer): void {
    const n = elements.length / ELEMENT_SIZE;
    if (this.childCount + n > this.children.length) {
      const grown = new Float64Array(Math.max(this.children.length * 2, this.childCount + n));
      grown.set(this.children.subarray(0, this.childCount));
      this.children = grown;
    }
    const first = this.childCount;
    for (let i = 0; i < n; i++) {
      const child = readU64(elements, i * ELEMENT_SIZE + 8);
      if (child < 2 || child * this.pageSize >= this.end) {
        this.childCount = first;
        this.breakPage(id, `element ${i} points at page ${child}, outside the db`);
        return;
      }
      this.children[first + i] = child;
    }
    this.childCount = first + n;
    this.kind[id] = BRANCH;
    this.aux[id] = first;
  }

  private onLeaf(id: number, elements: Buffer, elementsAt: number, pageEnd: number): void {
    this.kind[id] = LEAF;
    this.aux[id] = NaN;
    const problem = scanLeaf(id, elements, elementsAt, pageEnd, this.pageSize, this.fetch, this.sink);
    if (problem !== undefined) this.breakPage(id, problem);
  }

  private breakPage(id: number, why: string): void {
    // Only an error if the page turns out to be reachable: free pages may hold anything.
    this.kind[id] = BROKEN;
    this.broken.set(id, why);
  }

  private facts(meta: Meta): BoltFacts {
    const top = this.collect(meta.root, 'the root bucket');
    const keyBucket = bucketNamed(top, 'key');
    if (keyBucket === undefined) throw new BoltFormatError('bucket "key" is missing: this bbolt db is not an etcd backend');
    const metaBucket = bucketNamed(top, 'meta');

    let keyCount = 0;
    let lastMain = NaN;
    if ('broken' in keyBucket) throw new BoltFormatError(`bucket "key": ${keyBucket.broken}`);
    if ('inline' in keyBucket) {
      keyCount = keyBucket.inline.count;
      lastMain = keyBucket.inline.lastMain;
    } else {
      this.walk(keyBucket.root, 'bucket "key"', (id) => {
        const n = this.count[id] ?? 0;
        keyCount += n;
        if (n > 0) lastMain = this.aux[id] ?? NaN;
      });
    }
    const metaItems = metaBucket === undefined ? [] : this.items(metaBucket, 'meta');
    return { ...etcdFacts(keyCount > 0, lastMain, metaItems), keyCount, pageSize: this.pageSize, pageCount: meta.pageCount };
  }

  private items(ref: BucketRef, name: string): Found[] {
    if ('broken' in ref) throw new BoltFormatError(`bucket "${name}": ${ref.broken}`);
    if ('inline' in ref) return ref.inline.found;
    return this.collect(ref.root, `bucket "${name}"`);
  }

  private collect(root: number, what: string): Found[] {
    const all: Found[] = [];
    this.walk(root, what, (id) => all.push(...(this.found.get(id) ?? [])));
    return all;
  }

  /** Calls `visit` for each leaf of the tree under `root`, in key order. */
  private walk(root: number, what: string, visit: (id: number) => void): void {
    const stack = [root];
    const limit = this.end / this.pageSize;
    let steps = 0;
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      // A tree cannot have more nodes than the db has pages; more means a cycle.
      if (++steps > limit) throw new BoltFormatError(`${what}: its page tree loops`);
      if (id < 2 || id >= limit) throw new BoltFormatError(`${what}: page ${id} is outside the db (${limit} pages)`);
      const kind = this.kind[id] ?? UNSEEN;
      if (kind === LEAF) {
        visit(id);
      } else if (kind === BRANCH) {
        const first = this.aux[id] ?? 0;
        for (let i = first + (this.count[id] ?? 0) - 1; i >= first; i--) stack.push(this.children[i] ?? 0);
      } else if (kind === BROKEN) {
        throw new BoltFormatError(`${what}: page ${id} is damaged: ${this.broken.get(id) ?? 'unknown'}`);
      } else {
        throw new BoltFormatError(`${what}: page ${id} is not a branch or leaf page`);
      }
    }
  }
}

/** The facts of the db file at `dbPath` (a member's `member/snap/db`, or a saved snapshot). */
export async function readBoltFacts(dbPath: string): Promise<BoltFacts> {
  const file = await open(dbPath, 'r');
  try {
    const { size } = await file.stat();
    const scanner = new BoltScanner();
    // The scanner keeps no reference to a chunk, so one buffer serves every read (reading the next
    // chunk while scanning this one measured no faster). Bytes past the db's own size (the sha256
    // trailer `etcdctl snapshot save` keeps, or the unused tail of a data dir file grown ahead of
    // need) are not read.
    const buf = Buffer.allocUnsafe(READ_SIZE);
    for (let at = 0; at < Math.min(size, scanner.dbSize ?? size);) {
      const { bytesRead } = await file.read(buf, 0, Math.min(READ_SIZE, size - at), at);
      if (bytesRead === 0) break;
      scanner.write(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
    return scanner.finish();
  } finally {
    await file.close();
  }
}

/** What a look at a few pages of a db file finds: BoltFacts but the key count, which needs every leaf. */
export interface BoltFileFacts extends Omit<BoltFacts, 'keyCount'> {
  /** The file's size: at least pageCount × pageSize (bbolt grows the file ahead of need). */
  fileBytes: number;
  /** What was wrong with the meta page bbolt will not use, if anything (it falls back to the other). */
  damagedMeta?: string;
  /** Pages read to find these facts: the cost does not grow with the db, only with the tree's depth. */
  pagesRead: number;
}

// Deeper than any real bbolt tree (a billion keys are ~6 levels): deeper means a cycle.
const MAX_TREE_DEPTH = 64;

/**
 * The facts of the db file at `dbPath` by random access instead of a full read: the meta pages
 * (checksummed), the root bucket, bucket "meta", and one path down bucket "key" to its largest
 * revision. Every page on those paths is checked for structure (its own id, a branch or leaf, elements
 * inside the page, children inside the db); pages off those paths are not read, so damage there goes
 * unseen (etcd only notices it when it reads them, too). A 1 GB db costs a handful of reads, where
 * readBoltFacts streams all of it (anchor issue #71: minutes at start-up).
 */
export async function inspectBoltFile(dbPath: string): Promise<BoltFileFacts> {
  const file = await open(dbPath, 'r');
  try {
    const { size } = await file.stat();
    const head = Buffer.alloc(Math.min(size, 2 * MAX_PAGE_SIZE));
    await file.read(head, 0, head.length, 0);
    if (size < PAGE_HEADER_SIZE + META_SIZE) throw new BoltFormatError(`truncated: ${size} bytes cannot even hold a bbolt meta page`);
    const { meta, damaged } = chooseMeta(head);
    const end = meta.pageCount * meta.pageSize;
    if (size < end) throw new BoltFormatError(`truncated: the meta page says the db is ${end} bytes (${meta.pageCount} pages of ${meta.pageSize}), but the file has ${size}`);
    const pages = new PageReader(file, meta.pageSize, meta.pageCount);

    const top = await pages.collect(meta.root, 'the root bucket');
    const keyBucket = bucketNamed(top, 'key');
    if (keyBucket === undefined) throw new BoltFormatError('bucket "key" is missing: this bbolt db is not an etcd backend');
    if ('broken' in keyBucket) throw new BoltFormatError(`bucket "key": ${keyBucket.broken}`);
    const last = 'inline' in keyBucket ? { hasKeys: keyBucket.inline.count > 0, lastMain: keyBucket.inline.lastMain } : await pages.lastKey(keyBucket.root, 'bucket "key"');
    const metaBucket = bucketNamed(top, 'meta');
    let metaItems: Found[] = [];
    if (metaBucket !== undefined) {
      if ('broken' in metaBucket) throw new BoltFormatError(`bucket "meta": ${metaBucket.broken}`);
      metaItems = 'inline' in metaBucket ? metaBucket.inline.found : await pages.collect(metaBucket.root, 'bucket "meta"');
    }
    return {
      ...etcdFacts(last.hasKeys, last.lastMain, metaItems),
      pageSize: meta.pageSize,
      pageCount: meta.pageCount,
      fileBytes: size,
      ...(damaged === undefined ? {} : { damagedMeta: damaged }),
      pagesRead: pages.reads,
    };
  } finally {
    await file.close();
  }
}

interface NodePage {
  branch: boolean;
  count: number;
  /** The page and its overflow, read whole. */
  bytes: Buffer;
}

/** Reads branch and leaf pages of a db file on demand, checking each one's structure. */
class PageReader {
  reads = 0;

  constructor(
    private readonly file: FileHandle,
    private readonly pageSize: number,
    private readonly pageCount: number,
  ) {}

  async node(id: number, what: string): Promise<NodePage> {
    if (id < 2 || id >= this.pageCount) throw new BoltFormatError(`${what}: page ${id} is outside the db (${this.pageCount} pages)`);
    this.reads++;
    let bytes = await this.read(id * this.pageSize, this.pageSize);
    const claimed = readU64(bytes, 0);
    const flags = bytes.readUInt16LE(8);
    if (claimed !== id) throw new BoltFormatError(`${what}: page ${id} is damaged: its header says it is page ${claimed}`);
    if (flags !== BRANCH_PAGE && flags !== LEAF_PAGE) throw new BoltFormatError(`${what}: page ${id} is not a branch or leaf page (flags 0x${flags.toString(16)})`);
    const count = bytes.readUInt16LE(10);
    const overflow = bytes.readUInt32LE(12);
    if (id + overflow + 1 > this.pageCount) throw new BoltFormatError(`${what}: page ${id} is damaged: its ${overflow} overflow pages run past the end of the db`);
    if (overflow > 0) bytes = Buffer.concat([bytes, await this.read((id + 1) * this.pageSize, overflow * this.pageSize)]);
    if (PAGE_HEADER_SIZE + count * ELEMENT_SIZE > bytes.length) throw new BoltFormatError(`${what}: page ${id} is damaged: ${count} elements do not fit in it`);
    return { branch: flags === BRANCH_PAGE, count, bytes };
  }

  children(id: number, page: NodePage, what: string): number[] {
    const out: number[] = [];
    for (let i = 0; i < page.count; i++) {
      const child = readU64(page.bytes, PAGE_HEADER_SIZE + i * ELEMENT_SIZE + 8);
      if (child < 2 || child >= this.pageCount) throw new BoltFormatError(`${what}: page ${id} is damaged: element ${i} points at page ${child}, outside the db`);
      out.push(child);
    }
    return out;
  }

  /** Scans a leaf like BoltScanner does, every byte it asks for being already in hand. */
  leaf(id: number, page: NodePage, what: string, sink: LeafSink): void {
    const base = id * this.pageSize;
    const elementsAt = base + PAGE_HEADER_SIZE;
    const elements = page.bytes.subarray(PAGE_HEADER_SIZE, PAGE_HEADER_SIZE + page.count * ELEMENT_SIZE);
    const problem = scanLeaf(id, elements, elementsAt, base + page.bytes.length, this.pageSize, (start, end, use) => use(page.bytes.subarray(start - base, end - base)), sink);
    if (problem !== undefined) throw new BoltFormatError(`${what}: page ${id} is damaged: ${problem}`);
  }

  /** Every fact-bearing item in the tree under `root`; only for small trees (the root bucket, "meta"). */
  async collect(root: number, what: string): Promise<Found[]> {
    const found: Found[] = [];
    const sink: LeafSink = { lastMain: () => undefined, found: (_, item) => found.push(item) };
    const stack: Array<[number, number]> = [[root, 0]];
    for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
      const [id, depth] = next;
      if (depth > MAX_TREE_DEPTH) throw new BoltFormatError(`${what}: its page tree loops`);
      const page = await this.node(id, what);
      if (page.branch) for (const child of this.children(id, page, what).reverse()) stack.push([child, depth + 1]);
      else this.leaf(id, page, what, sink);
    }
    return found;
  }

  /**
   * The largest key's main revision, down the rightmost path; an empty leaf (which bbolt only leaves
   * behind as a root) sends the search one child to the left.
   */
  async lastKey(id: number, what: string, depth = 0): Promise<{ hasKeys: boolean; lastMain: number }> {
    if (depth > MAX_TREE_DEPTH) throw new BoltFormatError(`${what}: its page tree loops`);
    const page = await this.node(id, what);
    if (!page.branch) {
      let lastMain = NaN;
      this.leaf(id, page, what, { lastMain: (_, main) => (lastMain = main), found: () => undefined });
      return { hasKeys: page.count > 0, lastMain };
    }
    const children = this.children(id, page, what);
    for (let i = children.length - 1; i >= 0; i--) {
      const last = await this.lastKey(children[i] as number, what, depth + 1);
      if (last.hasKeys) return last;
    }
    return { hasKeys: false, lastMain: NaN };
  }

  private async read(at: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.file.read(buf, 0, length, at);
    if (bytesRead < length) throw new BoltFormatError(`truncated: the file ends inside page ${Math.floor((at + bytesRead) / this.pageSize)}`);
    return buf;
  }
}

/** Both meta pages at the largest page size bbolt allows. */
const META_HEAD_BYTES = 2 * MAX_PAGE_SIZE;

/** The meta page bbolt would use, read from an open db file (see chooseMeta). */
export async function readFileMeta(fh: FileHandle): Promise<Meta> {
  const head = Buffer.alloc(META_HEAD_BYTES);
  const { bytesRead } = await fh.read(head, 0, META_HEAD_BYTES, 0);
  return chooseMeta(head.subarray(0, bytesRead)).meta;
}

/**
 * The meta page bbolt would use, from the db's first bytes (both meta pages). Like bbolt: the newer
 * transaction wins, and a damaged meta page falls back to the other one (a data dir whose last
 * commit was torn is read as of the commit before). `damaged` says what was wrong with the other.
 */
export function chooseMeta(head: Buffer): { meta: Meta; damaged: string | undefined } {
  const meta0 = readMeta(head, 0);
  let meta1: Meta | string;
  if (typeof meta0 !== 'string') {
    meta1 = readMeta(head, meta0.pageSize);
    if (typeof meta1 !== 'string' && meta1.pageSize !== meta0.pageSize) meta1 = `page size ${meta1.pageSize} disagrees with meta 0's ${meta0.pageSize}`;
  } else {
    meta1 = readMeta(head, GUESSED_PAGE_SIZES[0] ?? 4096);
    for (const size of GUESSED_PAGE_SIZES) {
      const m = readMeta(head, size);
      if (typeof m !== 'string' && m.pageSize === size) {
        meta1 = m;
        break;
      }
    }
  }
  const valid = [meta0, meta1].filter((m): m is Meta => typeof m !== 'string');
  if (valid.length === 0)
    throw new BoltFormatError(`not a readable bbolt db: meta page 0: ${typeof meta0 === 'string' ? meta0 : 'valid'}; meta page 1: ${typeof meta1 === 'string' ? meta1 : 'valid'}`);
  const meta = valid.reduce((a, b) => (b.txid > a.txid ? b : a));
  const damaged = typeof meta0 === 'string' ? `meta page 0: ${meta0}` : typeof meta1 === 'string' ? `meta page 1: ${meta1}` : undefined;
  return { meta, damaged };
}

/**
 * revision, compactRevision and consistentIndex from the last key of bucket "key" (`lastMain`, NaN
 * when not revision-shaped; ignored when the bucket is empty) and the items of bucket "meta".
 */
function etcdFacts(hasKeys: boolean, lastMain: number, metaItems: Found[]): Pick<BoltFacts, 'revision' | 'compactRevision' | 'consistentIndex' | 'storageVersion' | 'hasTerm'> {
  if (hasKeys && Number.isNaN(lastMain)) throw new BoltFormatError('the last key in bucket "key" is not an etcd revision (17 or 18 bytes)');
  if (lastMain > Number.MAX_SAFE_INTEGER) throw new BoltFormatError(`the last key in bucket "key" holds revision ${lastMain}, beyond what this reader handles exactly`);

  let consistentIndex = 0n;
  let compactRevision = 0;
  let storageVersion: string | undefined;
  let hasTerm = false;
  for (const item of metaItems) {
    if (item.name === 'consistent_index') {
      // etcd reads the first 8 bytes and panics on fewer.
      if (item.size < 8) throw new BoltFormatError(`meta/consistent_index is ${item.size} bytes, not 8`);
      consistentIndex = item.value.readBigUInt64BE(0);
    } else if (item.name === 'finishedCompactRev') {
      if (item.size < REVISION_SIZE) throw new BoltFormatError(`meta/finishedCompactRev is ${item.size} bytes, not a ${REVISION_SIZE}-byte revision`);
      compactRevision = readMain(item.value);
    } else if (item.name === 'term') hasTerm = true;
    else if (item.name === 'storageVersion') storageVersion = item.value.toString('latin1');
  }

  return { revision: Math.max(1, hasKeys ? lastMain : 1, compactRevision), compactRevision, consistentIndex, hasTerm, ...(storageVersion !== undefined ? { storageVersion } : {}) };
}

function readMeta(buf: Buffer, pageAt: number): Meta | string {
  const at = pageAt + PAGE_HEADER_SIZE;
  if (buf.length < at + META_SIZE) return `missing (the stream ends at byte ${buf.length})`;
  const magic = buf.readUInt32LE(at);
  if (magic !== MAGIC) return `bad magic 0x${magic.toString(16).padStart(8, '0')} (a bbolt meta page starts with 0x${MAGIC.toString(16)})`;
  const version = buf.readUInt32LE(at + 4);
  if (version !== VERSION) return `unsupported bbolt version ${version} (expected ${VERSION})`;
  const stored = buf.readBigUInt64LE(at + META_CHECKSUM_AT);
  const computed = fnv1a64(buf, at, at + META_CHECKSUM_AT);
  // bbolt accepts a zero checksum (written by versions that had none).
  if (stored !== 0n && stored !== computed) return `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
  const pageSize = buf.readUInt32LE(at + 8);
  if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) return `implausible page size ${pageSize}`;
  const root = readU64(buf, at + 16);
  const pageCount = readU64(buf, at + 40);
  if (pageCount * pageSize > Number.MAX_SAFE_INTEGER) return `implausible page count ${pageCount}`;
  if (root < 2 || root >= pageCount) return `root page ${root} is outside the db's ${pageCount} pages`;
  return { pageSize, root, pageCount, txid: buf.readBigUInt64LE(at + 48) };
}

/**
 * Reads a leaf's element array and asks `fetch` for just the bytes that matter: the last key's
 * revision, and the keys etcd's facts live under (with their values). Returns why the leaf is
 * malformed, if it is.
 */
function scanLeaf(page: number, elements: Buffer, elementsAt: number, pageEnd: number, valueCap: number, fetch: Fetch, sink: LeafSink): string | undefined {
  const n = elements.length / ELEMENT_SIZE;
  const dataAt = elementsAt + elements.length;
  for (let i = 0; i < n; i++) {
    const e = i * ELEMENT_SIZE;
    const flags = elements.readUInt32LE(e);
    const keyAt = elementsAt + e + elements.readUInt32LE(e + 4);
    const keySize = elements.readUInt32LE(e + 8);
    const valueSize = elements.readUInt32LE(e + 12);
    if (keyAt < dataAt || keyAt + keySize + valueSize > pageEnd) return `element ${i} points outside its page`;
    const isBucket = (flags & BUCKET_ELEMENT) !== 0;
    // Filter by length before fetching: "key"/"meta" are buckets, the others plain values.
    if (isBucket ? keySize === 3 || keySize === 4 : META_VALUE_SIZES.has(keySize)) {
      const take = Math.min(valueSize, isBucket ? valueCap : REVISION_SIZE);
      fetch(keyAt, keyAt + keySize + take, (bytes) => {
        const item = recognize(bytes.subarray(0, keySize), bytes.subarray(keySize), valueSize, isBucket);
        if (item !== undefined) sink.found(page, item);
      });
    }
    // In bucket "key" this is the largest revision: 17 bytes (main, '_', sub), 18 for a tombstone
    // (etcd 3.4 appends a 't'); etcd takes the main revision from the first 8 either way.
    if (i === n - 1 && keySize >= REVISION_SIZE) fetch(keyAt, keyAt + 8, (bytes) => sink.lastMain(page, readMain(bytes)));
  }
  return undefined;
}

function recognize(key: Buffer, value: Buffer, valueSize: number, isBucket: boolean): Found | undefined {
  const name = key.toString('latin1');
  if (isBucket) return name === 'key' || name === 'meta' ? { name, bucket: readBucket(value, valueSize) } : undefined;
  // Copied: `value` may point into the caller's reusable read buffer.
  return META_VALUES.has(name) ? { name: name as MetaValue, value: Buffer.from(value), size: valueSize } : undefined;
}

function readBucket(value: Buffer, valueSize: number): BucketRef {
  if (value.length < valueSize) return { broken: `its inline value of ${valueSize} bytes is larger than a page` };
  if (valueSize < BUCKET_HEADER_SIZE) return { broken: `its ${valueSize}-byte value is too short for a bucket header` };
  const root = readU64(value, 0);
  if (root !== 0) return { root };
  // Root 0: a small bucket stored inline, as a leaf page image right after the bucket header.
  const page = value.subarray(BUCKET_HEADER_SIZE);
  if (page.length < PAGE_HEADER_SIZE) return { broken: 'its inline page is cut short' };
  const count = page.readUInt16LE(10);
  if (page.readUInt16LE(8) !== LEAF_PAGE) return { broken: `its inline page has flags 0x${page.readUInt16LE(8).toString(16)}, not a leaf's` };
  const elementsEnd = PAGE_HEADER_SIZE + count * ELEMENT_SIZE;
  if (elementsEnd > page.length) return { broken: `its inline page's ${count} elements do not fit` };
  const leaf: InlineLeaf = { count, lastMain: NaN, found: [] };
  const problem = scanLeaf(0, page.subarray(PAGE_HEADER_SIZE, elementsEnd), PAGE_HEADER_SIZE, page.length, page.length, (start, end, use) => use(page.subarray(start, end)), {
    lastMain: (_, main) => {
      leaf.lastMain = main;
    },
    found: (_, item) => leaf.found.push(item),
  });
  return problem === undefined ? { inline: leaf } : { broken: `its inline page: ${problem}` };
}

export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
}

/** The main part of an etcd revision key or value: its first 8 bytes, big-endian. */
function readMain(buf: Buffer): number {
  return buf.readUInt32BE(0) * 2 ** 32 + buf.readUInt32BE(4);
}

function fnv1a64(buf: Buffer, start: number, end: number): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = start; i < end; i++) h = ((h ^ BigInt(buf.readUInt8(i))) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

function bucketNamed(items: Found[], name: 'key' | 'meta'): BucketRef | undefined {
  for (const item of items) if ((item.name === 'key' || item.name === 'meta') && item.name === name) return item.bucket;
  return undefined;
}
