/**
 * etcd 3.4's write-ahead log (member/wal/*.wal), read the way `wal.ReadAll` reads it when etcd
 * starts, without starting etcd. Pure: the caller hands in each file's bytes, in sequence order.
 *
 * The format (etcd release-3.4, wal/ and wal/walpb): a file is a run of frames, each an 8-byte
 * little-endian length word (low 56 bits: record bytes; when the top bit is set, the top byte's low 3
 * bits count the padding that aligns frames to 8 bytes) and a protobuf walpb.Record {1: type,
 * 2: crc, 3: data}. A zero length word ends a file: segments are preallocated (64 MB) and zero-filled.
 * Every record but a crc record extends one CRC-32C chain over the record data; a crc record (the
 * first of each file) carries the chain's value at the end of the previous file.
 */

export const WAL_RECORD = { metadata: 1, entry: 2, state: 3, crc: 4, snapshot: 5 } as const;

// etcd refuses records this large or larger: raft messages are capped far below it.
const MAX_RECORD_BYTES = 10 * 1024 * 1024;
// etcd's torn-write test looks at the record in 512-byte disk sectors.
const SECTOR = 512;
const FRAME_LENGTH_BYTES = 8;

export class WalFormatError extends Error {
  override name = 'WalFormatError';
  constructor(
    readonly file: string,
    readonly offset: number,
    problem: string,
  ) {
    super(`${file} at offset ${offset}: ${problem}`);
  }
}

/** What the WAL says about its member, as of its last intact record. */
export interface WalFacts {
  /** From the metadata record (etcdserverpb.Metadata), as hex like etcdctl prints it. */
  memberId?: string;
  clusterId?: string;
  /** Index and term of the last entry record (a later entry with a lower index replaces the log's tail). */
  lastIndex: number;
  lastTerm: number;
  /** The last walpb.Snapshot record: the raft snapshot the log continues from. */
  snapshotIndex: number;
  snapshotTerm: number;
  /** The last HardState record. */
  hardState?: { term: number; vote: string; commit: number };
  entries: number;
  files: number;
  /** Where the last intact record starts (the frame's length word), and its type. */
  lastRecord?: { file: string; offset: number; type: number };
  /** A record cut short at the very end of the last file: a crash mid-write, which etcd repairs at start. */
  tornTail?: { file: string; offset: number; problem: string };
}

/** Reads WAL files one after the other, carrying the CRC chain and the facts across them. */
export class WalReader {
  private crc = 0;
  private metadata: Buffer | undefined;
  private file = { name: '', last: false };
  private window = Buffer.alloc(0);
  private readonly facts: WalFacts = { lastIndex: 0, lastTerm: 0, snapshotIndex: 0, snapshotTerm: 0, entries: 0, files: 0 };

  /**
   * One file's bytes, whole. `last` marks the newest file, the only one where a torn record is a
   * crash rather than damage (etcd applies the same rule). Throws WalFormatError naming file and offset.
   */
  readFile(file: string, bytes: Buffer, last: boolean): void {
    this.beginFile(file, last);
    this.feed(bytes, 0, true);
  }

  /**
   * One file as it streams in (a read stream, or any chunks): only whole frames are kept waiting,
   * so memory stays flat however large the segment, and reading stops at the end of the records
   * (the zeroed, preallocated rest of the newest segment is never read).
   */
  async readSegment(file: string, last: boolean, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<void> {
    this.beginFile(file, last);
    // One window, reused: the unconsumed tail moves to its front and each chunk is copied in after
    // it (a chunk may be reused by its source), so a segment of 1 MB records makes no garbage.
    let window = this.window;
    let length = 0;
    let windowAt = 0;
    for await (const chunk of chunks) {
      if (length + chunk.length > window.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * window.length, length + chunk.length, 1 << 20));
        window.copy(grown, 0, 0, length);
        window = grown;
        this.window = grown;
      }
      chunk.copy(window, length);
      length += chunk.length;
      const next = this.feed(window.subarray(0, length), windowAt, false);
      if (next === 'end') return;
      window.copyWithin(0, next - windowAt, length);
      length -= next - windowAt;
      windowAt = next;
    }
    this.feed(window.subarray(0, length), windowAt, true);
  }

  /** Starts the next file, to be given in windows with `feed`. */
  beginFile(file: string, last: boolean): void {
    if (this.facts.tornTail !== undefined) throw new WalFormatError(file, 0, `follows ${this.facts.tornTail.file}, whose last record is torn`);
    this.facts.files++;
    this.file = { name: file, last };
  }

  /**
   * Reads the whole frames in `window`, the current file's bytes from offset `windowAt` (`eof`: the
   * file ends with it). Returns the offset of the first byte it did not consume (the next window
   * must start there), or 'end' once the file's records are over: a zero length word (the
   * preallocated rest need not be read), or a torn tail.
   */
  feed(window: Buffer, windowAt: number, eof: boolean): number | 'end' {
    const { name: file, last } = this.file;
    const windowEnd = windowAt + window.length;
    let at = windowAt;
    while (at + FRAME_LENGTH_BYTES <= windowEnd) {
      const lenField = window.readBigUInt64LE(at - windowAt);
      if (lenField === 0n) return 'end';
      const recBytes = Number(lenField & 0x00ff_ffff_ffff_ffffn);
      const padBytes = lenField >> 63n === 1n ? Number((lenField >> 56n) & 7n) : 0;
      if (recBytes >= MAX_RECORD_BYTES - padBytes) throw new WalFormatError(file, at, `record length ${recBytes} is beyond etcd's limit of ${MAX_RECORD_BYTES} bytes`);
      const dataAt = at + FRAME_LENGTH_BYTES;
      const frameEnd = dataAt + recBytes + padBytes;
      if (frameEnd > windowEnd) {
        if (!eof) return at;
        this.torn(at, `the file ends ${frameEnd - windowEnd} bytes short of the record's end`);
        return 'end';
      }
      const frame = window.subarray(dataAt - windowAt, frameEnd - windowAt);
      const problem = this.record(frame.subarray(0, recBytes), file, at);
      if (problem !== undefined) {
        // Like etcd: damage inside a record with a zeroed sector, at the end of the newest file, is a
        // write the crash cut short; anywhere else it is corruption.
        if (last && hasZeroSector(frame, dataAt)) {
          this.torn(at, problem);
          return 'end';
        }
        throw new WalFormatError(file, at, problem);
      }
      at = frameEnd;
    }
    if (!eof) return at;
    if (at < windowEnd) this.torn(at, `${windowEnd - at} bytes left, too few for a length word`);
    return 'end';
  }

  finish(): WalFacts {
    return { ...this.facts };
  }

  private torn(offset: number, problem: string): void {
    const { name: file, last } = this.file;
    if (!last) throw new WalFormatError(file, offset, `${problem} (torn record before the last WAL file)`);
    this.facts.tornTail = { file, offset, problem };
  }

  /** Applies one record; returns why it is bad instead of throwing, so the caller can tell torn from corrupt. */
  private record(bytes: Buffer, file: string, offset: number): string | undefined {
    let type = 0;
    let crc = 0;
    let data: Buffer = Buffer.alloc(0);
    const bad = eachField(bytes, (field, value) => {
      if (field === 1 && typeof value === 'number') type = value;
      else if (field === 2 && typeof value === 'number') crc = value;
      else if (field === 3 && Buffer.isBuffer(value)) data = value;
    });
    if (bad !== undefined) return `not a walpb.Record: ${bad}`;
    const problem = this.apply(type, crc, data);
    if (problem === undefined) this.facts.lastRecord = { file, offset, type };
    return problem;
  }

  private apply(type: number, crc: number, data: Buffer): string | undefined {
    if (type === WAL_RECORD.crc) {
      // A fresh reader starts the chain at 0 and cannot check the first file's carried-in value.
      if (this.crc !== 0 && crc !== this.crc) return `CRC chain broken: the crc record carries 0x${hex32(crc)}, the records before it sum to 0x${hex32(this.crc)}`;
      this.crc = crc;
      return undefined;
    }
    const running = crc32c(data, this.crc);
    if (running !== crc) return `CRC mismatch in a record of type ${type}: stored 0x${hex32(crc)}, computed 0x${hex32(running)}`;
    this.crc = running;
    switch (type) {
      case WAL_RECORD.entry: {
        const e = readUints(data, 'raftpb.Entry', [2, 3]);
        if (typeof e === 'string') return e;
        const index = e[3] ?? 0;
        // An entry may rewrite the log's tail (a lower index), never skip ahead of it: etcd refuses
        // such a log (ErrSliceOutOfRange). A raft snapshot received from the leader moves the tail.
        const tail = Math.max(this.facts.lastIndex, this.facts.snapshotIndex);
        if (this.facts.entries > 0 && index > tail + 1) return `entry ${index} follows index ${tail}: entries ${tail + 1}..${index - 1} are missing`;
        this.facts.lastTerm = e[2] ?? 0;
        this.facts.lastIndex = index;
        this.facts.entries++;
        return undefined;
      }
      case WAL_RECORD.state: {
        const s = readUints(data, 'raftpb.HardState', [1, 3]);
        if (typeof s === 'string') return s;
        this.facts.hardState = { term: s[1] ?? 0, vote: (readUint64s(data)[2] ?? 0n).toString(16), commit: s[3] ?? 0 };
        return undefined;
      }
      case WAL_RECORD.snapshot: {
        const s = readUints(data, 'walpb.Snapshot', [1, 2]);
        if (typeof s === 'string') return s;
        this.facts.snapshotIndex = s[1] ?? 0;
        this.facts.snapshotTerm = s[2] ?? 0;
        return undefined;
      }
      case WAL_RECORD.metadata: {
        // etcd refuses a WAL whose files disagree about whom they belong to (ErrMetadataConflict).
        if (this.metadata !== undefined && !this.metadata.equals(data)) return 'metadata conflicts with the metadata of earlier records (member or cluster ID differs)';
        this.metadata = Buffer.from(data);
        const ids = readUint64s(data);
        this.facts.memberId = (ids[1] ?? 0n).toString(16);
        this.facts.clusterId = (ids[2] ?? 0n).toString(16);
        return undefined;
      }
      default:
        return `unexpected record type ${type}`;
    }
  }
}

/** The sequence and first raft index in a WAL file name (`%016x-%016x.wal`), or undefined if it is not one. */
export function parseWalName(name: string): { seq: bigint; index: bigint } | undefined {
  const m = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/.exec(name);
  return m ? { seq: BigInt(`0x${m[1]}`), index: BigInt(`0x${m[2]}`) } : undefined;
}

/** WAL file names in the order etcd reads them; throws when the sequence has a gap (etcd refuses it too). */
export function orderWalNames(names: readonly string[]): string[] {
  const wal = names
    .map((name) => ({ name, parsed: parseWalName(name) }))
    .filter((w): w is { name: string; parsed: { seq: bigint; index: bigint } } => w.parsed !== undefined)
    .sort((a, b) => (a.parsed.seq < b.parsed.seq ? -1 : a.parsed.seq > b.parsed.seq ? 1 : 0));
  for (let i = 1; i < wal.length; i++) {
    const prev = wal[i - 1];
    const cur = wal[i];
    if (prev && cur && cur.parsed.seq !== prev.parsed.seq + 1n) throw new Error(`WAL sequence has a gap: ${prev.name} is followed by ${cur.name}`);
  }
  return wal.map((w) => w.name);
}

function hasZeroSector(frame: Buffer, fileOffset: number): boolean {
  for (let at = 0; at < frame.length;) {
    const end = Math.min(frame.length, at + SECTOR - ((fileOffset + at) % SECTOR));
    let zero = true;
    for (let i = at; i < end; i++) {
      if (frame[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) return true;
    at = end;
  }
  return false;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

// ---- protobuf: just the wire format, enough for these few messages ----

type FieldValue = number | bigint | Buffer;

/**
 * Calls `use` with each field: varints as numbers when exact (else bigint), length-delimited fields
 * as subarrays. Returns what is malformed, if anything.
 */
export function eachField(buf: Buffer, use: (field: number, value: FieldValue) => void): string | undefined {
  let at = 0;
  while (at < buf.length) {
    const key = readVarint(buf, at);
    if (key === undefined) return `cut-off field key at byte ${at}`;
    at = key.next;
    const field = Number(key.value >> 3n);
    const wire = Number(key.value & 7n);
    if (field === 0) return `field number 0 at byte ${at}`;
    if (wire === 0) {
      const v = readVarint(buf, at);
      if (v === undefined) return `cut-off varint in field ${field}`;
      at = v.next;
      use(field, v.value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v.value) : v.value);
    } else if (wire === 2) {
      const len = readVarint(buf, at);
      if (len === undefined) return `cut-off length in field ${field}`;
      const end = len.next + Number(len.value);
      if (end > buf.length) return `field ${field} runs ${end - buf.length} bytes past the message`;
      use(field, buf.subarray(len.next, end));
      at = end;
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
      if (at > buf.length) return `cut-off fixed-size field ${field}`;
    } else {
      return `unknown wire type ${wire} in field ${field}`;
    }
  }
  return undefined;
}

function readVarint(buf: Buffer, at: number): { value: bigint; next: number } | undefined {
  let value = 0n;
  for (let shift = 0n, i = at; i < buf.length && shift < 70n; i++, shift += 7n) {
    const b = buf[i] as number;
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return { value: value & 0xffff_ffff_ffff_ffffn, next: i + 1 };
  }
  return undefined;
}

/**
 * A message's varint fields by number, as numbers; a string says what is wrong, a value past 2^53
 * in one of the `exact` fields (indexes and terms) included. IDs go through readUint64s instead.
 */
function readUints(data: Buffer, what: string, exact: readonly number[]): number[] | string {
  const out: number[] = [];
  let tooBig: number | undefined;
  const bad = eachField(data, (field, value) => {
    if (typeof value === 'number') out[field] = value;
    else if (typeof value === 'bigint' && exact.includes(field)) tooBig = field;
  });
  if (bad !== undefined) return `not a ${what}: ${bad}`;
  if (tooBig !== undefined) return `${what} field ${tooBig} is beyond 2^53`;
  return out;
}

/** A message's varint fields by number, exact (uint64 member and cluster IDs). */
function readUint64s(data: Buffer): bigint[] {
  const out: bigint[] = [];
  eachField(data, (field, value) => {
    if (typeof value !== 'object') out[field] = BigInt(value);
  });
  return out;
}

// ---- CRC-32C (Castagnoli), slicing by 8: the WAL's checksum, over every byte etcd wrote ----

const CRC_TABLES = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  const t0 = t[0] as Uint32Array;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) {
      const prev = t[k - 1] as Uint32Array;
      (t[k] as Uint32Array)[n] = (((prev[n] as number) >>> 8) ^ (t0[(prev[n] as number) & 0xff] as number)) >>> 0;
    }
  }
  return t as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
})();

/** CRC-32C of `data`, continuing from `prev` (the CRC of what came before; 0 to start). */
// The hot loop of WAL inspection: every index is inside the array by the loop's own bound, and the
// tables have 256 entries; checks here would cost a third of the speed for nothing.
/* eslint-disable @typescript-eslint/no-non-null-assertion */
export function crc32c(data: Uint8Array, prev = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let c = ~prev >>> 0;
  let i = 0;
  const n = data.length;
  for (; i + 8 <= n; i += 8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c = t7[lo & 0xff]! ^ t6[(lo >>> 8) & 0xff]! ^ t5[(lo >>> 16) & 0xff]! ^ t4[lo >>> 24]! ^ t3[data[i + 4]!]! ^ t2[data[i + 5]!]! ^ t1[data[i + 6]!]! ^ t0[data[i + 7]!]!;
  }
  for (; i < n; i++) c = t0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
/* eslint-enable @typescript-eslint/no-non-null-assertion */
