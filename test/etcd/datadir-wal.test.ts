import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32c, orderWalNames, parseWalName, WAL_RECORD, WalFormatError, WalReader, type WalFacts } from '../../src/etcd/wal.js';

// An encoder written from the format description (etcd release-3.4 wal/encoder.go, walpb, raftpb),
// so crafted WALs can hold exactly the damage a test wants.

function varint(n: bigint | number): Buffer {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return Buffer.from(out);
}

function uintField(field: number, value: bigint | number): Buffer {
  return Buffer.concat([varint(field << 3), varint(value)]);
}

function bytesField(field: number, value: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(value.length), value]);
}

const metadata = (nodeId: bigint, clusterId: bigint): Buffer => Buffer.concat([uintField(1, nodeId), uintField(2, clusterId)]);
// gogoproto writes Entry's fields in declaration order: Term, Index, Type, Data.
const entry = (term: number, index: number, data = Buffer.from(`put ${index}`)): Buffer => Buffer.concat([uintField(2, term), uintField(3, index), uintField(1, 0), bytesField(4, data)]);
const hardState = (term: number, vote: bigint, commit: number): Buffer => Buffer.concat([uintField(1, term), uintField(2, vote), uintField(3, commit)]);
const snapshot = (index: number, term: number): Buffer => Buffer.concat([uintField(1, index), uintField(2, term)]);

/** Writes records into WAL segment files with the CRC chain etcd keeps. */
class WalWriter {
  crc = 0;
  private parts: Buffer[] = [];
  /** Where each record's frame starts, in the current file. */
  offsets: number[] = [];
  /** Bytes in the current file so far. */
  size = 0;

  record(type: number, data: Buffer): this {
    let crc: number;
    if (type === WAL_RECORD.crc) {
      crc = this.crc;
    } else {
      this.crc = crc32c(data, this.crc);
      crc = this.crc;
    }
    const rec = Buffer.concat([uintField(1, type), uintField(2, crc), bytesField(3, data)]);
    const pad = (8 - (rec.length % 8)) % 8;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(rec.length) | (pad > 0 ? BigInt(0x80 | pad) << 56n : 0n));
    this.offsets.push(this.size);
    this.push(len, rec, Buffer.alloc(pad));
    return this;
  }

  /** A new segment as etcd cuts one: the chain so far, the metadata, the HardState. */
  cut(meta: Buffer, state: Buffer): Buffer {
    const done = this.file();
    this.record(WAL_RECORD.crc, Buffer.alloc(0)).record(WAL_RECORD.metadata, meta).record(WAL_RECORD.state, state);
    return done;
  }

  /** The current file's bytes, followed by the zeroed space etcd preallocates. */
  file(prealloc = 4096): Buffer {
    const out = Buffer.concat([...this.parts, Buffer.alloc(prealloc)]);
    this.parts = [];
    this.offsets = [];
    this.size = 0;
    return out;
  }

  private push(...bufs: Buffer[]): void {
    for (const b of bufs) {
      this.parts.push(b);
      this.size += b.length;
    }
  }
}

const MEMBER = 0x8e9e05c52164694dn; // above 2^53: must stay exact
const CLUSTER = 0xcdf818194e3a8c32n;

/** A fresh member's first segment as etcd 3.4 writes it, then `n` entries and a HardState. */
function firstSegment(n: number, term = 2): WalWriter {
  const w = new WalWriter();
  w.record(WAL_RECORD.crc, Buffer.alloc(0)).record(WAL_RECORD.metadata, metadata(MEMBER, CLUSTER)).record(WAL_RECORD.snapshot, snapshot(0, 0));
  for (let i = 1; i <= n; i++) w.record(WAL_RECORD.entry, entry(term, i));
  w.record(WAL_RECORD.state, hardState(term, MEMBER, n));
  return w;
}

function read(files: Array<[string, Buffer]>): WalFacts {
  const r = new WalReader();
  files.forEach(([name, bytes], i) => r.readFile(name, bytes, i === files.length - 1));
  return r.finish();
}

const NAME0 = 'member/wal/0000000000000000-0000000000000000.wal';
const NAME1 = 'member/wal/0000000000000001-0000000000000015.wal';

describe('crc32c', () => {
  it('matches the Castagnoli check value and chains like Go crc32.Update', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    const a = Buffer.from('the first record, long enough for the 8-byte loop');
    const b = Buffer.from('and the next');
    assert.equal(crc32c(b, crc32c(a)), crc32c(Buffer.concat([a, b])));
  });
});

describe('WAL reader', () => {
  it('reads member and cluster ID exactly, the last entry, and the HardState', () => {
    const w = firstSegment(20);
    const facts = read([[NAME0, w.file()]]);
    assert.equal(facts.memberId, MEMBER.toString(16));
    assert.equal(facts.clusterId, CLUSTER.toString(16));
    assert.deepEqual([facts.lastIndex, facts.lastTerm, facts.entries], [20, 2, 20]);
    assert.deepEqual(facts.hardState, { term: 2, vote: MEMBER.toString(16), commit: 20 });
    assert.equal(facts.tornTail, undefined);
  });

  it('a later entry with a lower index replaces the tail of the log (a new leader overwrote it)', () => {
    const w = firstSegment(10);
    w.record(WAL_RECORD.entry, entry(3, 8));
    const facts = read([[NAME0, w.file()]]);
    assert.deepEqual([facts.lastIndex, facts.lastTerm], [8, 3]);
  });

  it('entries that skip ahead of the log are damage; after a raft snapshot from the leader they may', () => {
    const w = firstSegment(10);
    w.record(WAL_RECORD.entry, entry(2, 13));
    assert.throws(() => read([[NAME0, w.file()]]), /entry 13 follows index 10: entries 11\.\.12 are missing/);
    const s = firstSegment(10);
    s.record(WAL_RECORD.snapshot, snapshot(500, 3)).record(WAL_RECORD.entry, entry(3, 501));
    const facts = read([[NAME0, s.file()]]);
    assert.deepEqual([facts.lastIndex, facts.snapshotIndex], [501, 500]);
  });

  it('follows the CRC chain into the next segment', () => {
    const w = firstSegment(20);
    const first = w.cut(metadata(MEMBER, CLUSTER), hardState(2, MEMBER, 20));
    for (let i = 21; i <= 30; i++) w.record(WAL_RECORD.entry, entry(2, i));
    const facts = read([
      [NAME0, first],
      [NAME1, w.file()],
    ]);
    assert.deepEqual([facts.lastIndex, facts.files], [30, 2]);
  });

  it('a segment whose carried CRC does not continue the chain is corrupt', () => {
    const w = firstSegment(20);
    const first = w.cut(metadata(MEMBER, CLUSTER), hardState(2, MEMBER, 20));
    w.file();
    // The second segment as if written after different records.
    const other = new WalWriter();
    other.crc = 0x12345678;
    other.record(WAL_RECORD.crc, Buffer.alloc(0)).record(WAL_RECORD.metadata, metadata(MEMBER, CLUSTER));
    assert.throws(
      () =>
        read([
          [NAME0, first],
          [NAME1, other.file()],
        ]),
      (err: unknown) => err instanceof WalFormatError && err.file === NAME1 && err.offset === 0 && /CRC chain broken: the crc record carries 0x12345678/.test(err.message),
    );
  });

  it('a flipped byte in a record before the tail is corrupt, named by file and offset', () => {
    const w = firstSegment(20);
    const at = w.offsets[10] ?? 0;
    const bytes = w.file();
    bytes[at + 20] = (bytes[at + 20] ?? 0) ^ 0x01;
    assert.throws(
      () => read([[NAME0, bytes]]),
      (err: unknown) => err instanceof WalFormatError && err.message.startsWith(`${NAME0} at offset ${at}: CRC mismatch`),
    );
  });

  it('a record cut short at the end of the newest segment is a crash mid-write, not damage', () => {
    const w = firstSegment(20);
    const lastAt = w.offsets.at(-1) ?? 0;
    const whole = w.file(0);
    const facts = read([[NAME0, whole.subarray(0, lastAt + 11)]]);
    assert.deepEqual(facts.tornTail, { file: NAME0, offset: lastAt, problem: facts.tornTail?.problem });
    assert.match(facts.tornTail?.problem ?? '', /the file ends \d+ bytes short/);
    assert.equal(facts.lastIndex, 20, 'the entries before the torn HardState count');
    assert.equal(facts.hardState, undefined);
  });

  it('a record whose sector never reached the disk (zeroed) at the tail is torn; with data in every sector it is corrupt', () => {
    const w = new WalWriter();
    w.record(WAL_RECORD.crc, Buffer.alloc(0)).record(WAL_RECORD.metadata, metadata(MEMBER, CLUSTER)).record(WAL_RECORD.snapshot, snapshot(0, 0));
    w.record(WAL_RECORD.entry, entry(2, 1));
    const bigAt = w.size;
    w.record(WAL_RECORD.entry, entry(2, 2, Buffer.alloc(3000, 'x')));
    const bytes = w.file();
    // The frame's data starts at bigAt + 8; zero the whole second sector it touches.
    const sectorStart = Math.ceil((bigAt + 8) / 512) * 512 + 512;
    const zeroed = Buffer.from(bytes);
    zeroed.fill(0, sectorStart, sectorStart + 512);
    const facts = read([[NAME0, zeroed]]);
    assert.equal(facts.tornTail?.offset, bigAt);
    assert.equal(facts.lastIndex, 1);
    const flipped = Buffer.from(bytes);
    flipped[sectorStart + 100] = 0x79;
    assert.throws(() => read([[NAME0, flipped]]), /CRC mismatch/);
    // In any segment but the newest, even a torn-looking record is damage.
    assert.throws(
      () =>
        read([
          [NAME0, zeroed],
          [NAME1, new WalWriter().record(WAL_RECORD.crc, Buffer.alloc(0)).file()],
        ]),
      (err: unknown) => err instanceof WalFormatError && err.file === NAME0 && err.offset === bigAt && /CRC mismatch/.test(err.message),
    );
  });

  it('segments that disagree about the member are refused, as etcd does', () => {
    const w = firstSegment(5);
    const first = w.cut(metadata(MEMBER + 1n, CLUSTER), hardState(2, MEMBER, 5));
    assert.throws(
      () =>
        read([
          [NAME0, first],
          [NAME1, w.file()],
        ]),
      /metadata conflicts/,
    );
  });

  it("a length beyond etcd's limit and an unknown record type are corrupt", () => {
    const w = firstSegment(3);
    const bytes = w.file();
    const huge = Buffer.from(bytes);
    huge.writeBigUInt64LE(64n << 20n, 0);
    assert.throws(() => read([[NAME0, huge]]), /record length 67108864 is beyond etcd's limit/);
    const odd = new WalWriter().record(WAL_RECORD.crc, Buffer.alloc(0)).record(9, Buffer.from('?')).file();
    assert.throws(() => read([[NAME0, odd]]), /unexpected record type 9/);
  });
});

describe('WAL reader, streamed', () => {
  /** `bytes` cut into chunks of the given sizes, repeating. */
  function* chunks(bytes: Buffer, sizes: number[]): Generator<Buffer> {
    for (let at = 0, i = 0; at < bytes.length; i++) {
      const size = sizes[i % sizes.length] ?? 1;
      yield Buffer.from(bytes.subarray(at, at + size)); // a fresh copy, as a stream's chunk
      at += size;
    }
  }
  async function streamed(files: Array<[string, Buffer]>, sizes: number[]): Promise<WalFacts> {
    const r = new WalReader();
    for (const [i, [name, bytes]] of files.entries()) await r.readSegment(name, i === files.length - 1, chunks(bytes, sizes));
    return r.finish();
  }

  it('gives what the whole file gives, cut into any chunks, torn tail included', async () => {
    const w = firstSegment(30);
    w.record(WAL_RECORD.entry, entry(2, 31, Buffer.alloc(5000, 'y')));
    const first = w.cut(metadata(MEMBER, CLUSTER), hardState(2, MEMBER, 31));
    for (let i = 32; i <= 40; i++) w.record(WAL_RECORD.entry, entry(2, i));
    const lastAt = w.offsets.at(-1) ?? 0;
    const second = w.file(0);
    for (const tail of [second, second.subarray(0, lastAt + 3), Buffer.concat([second, Buffer.alloc(8192)])]) {
      const files: Array<[string, Buffer]> = [
        [NAME0, first],
        [NAME1, tail],
      ];
      const whole = read(files);
      for (const sizes of [[1], [7, 13], [4096], [1 << 20], [5000, 3, 100]]) assert.deepEqual(await streamed(files, sizes), whole, `chunks ${sizes.join(',')}`);
    }
  });

  it('a damaged record is reported at the same offset whatever the chunking', async () => {
    const w = firstSegment(30);
    const at = w.offsets[20] ?? 0;
    const bytes = w.file();
    bytes[at + 12] = (bytes[at + 12] ?? 0) ^ 0x40;
    for (const sizes of [[1], [9], [4096]]) {
      await assert.rejects(streamed([[NAME0, bytes]], sizes), (err: unknown) => err instanceof WalFormatError && err.offset === at);
    }
  });
});

describe('WAL file names', () => {
  it('parses seq and index, orders by seq, and refuses a gap', () => {
    assert.deepEqual(parseWalName('000000000000000a-00000000000003e8.wal'), { seq: 10n, index: 1000n });
    assert.equal(parseWalName('0.tmp'), undefined);
    assert.deepEqual(orderWalNames(['0000000000000001-0000000000000010.wal', '0.tmp', '0000000000000000-0000000000000000.wal']), [
      '0000000000000000-0000000000000000.wal',
      '0000000000000001-0000000000000010.wal',
    ]);
    assert.throws(() => orderWalNames(['0000000000000000-0000000000000000.wal', '0000000000000002-0000000000000010.wal']), /gap/);
  });
});
