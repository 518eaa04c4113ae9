import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { gunzipSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { COMPRESSIONS, compressBuffer, compressStream, compressionFromSuffix, compressionSuffix, decompressBuffer, decompressStream, type Compression } from '../../src/snapshot/compression.js';
import { DeltaBuilder, DeltaFormatError, decodeDelta, decodeStdBase64, encodeDelta, eventJson, type DeltaEvent, type KeyValueRecord } from '../../src/snapshot/delta-format.js';

// Written by Go (the anchor's own encoders); see test/fixtures/anchor/README.md.
const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/anchor/${name}`, import.meta.url));

interface PlainKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: string;
}
interface PlainEvent {
  type: 'put' | 'delete';
  kv: PlainKv;
  prevKv?: PlainKv;
  time: string;
}
const kvOf = (p: PlainKv): KeyValueRecord => ({
  key: Buffer.from(p.key, 'base64'),
  value: Buffer.from(p.value, 'base64'),
  createRevision: p.createRevision,
  modRevision: p.modRevision,
  version: p.version,
  lease: p.lease,
});
const goEvents: DeltaEvent[] = (JSON.parse(fixture('events.json').toString()) as PlainEvent[]).map((p) => ({
  type: p.type,
  kv: kvOf(p.kv),
  ...(p.prevKv ? { prevKv: kvOf(p.prevKv) } : {}),
  time: p.time,
}));

const LZW_FIXTURES = ['empty', 'one', 'repeated', 'random', 'text'];

/** Runs `chunks` through a stream and collects what comes out. */
async function through(stream: Transform, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), stream, async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) out.push(c);
  });
  return Buffer.concat(out);
}

function cut(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  return [...at, buf.length].map((end, i) => buf.subarray(i === 0 ? 0 : (at[i - 1] as number), end));
}

test('Go-written deltas decode to the events, lease ids exact, from every compression', async () => {
  const bin = fixture('delta.bin');
  assert.deepEqual(decodeDelta(bin), goEvents);
  assert.equal(goEvents.find((e) => e.kv.key.toString() === '/leased')?.kv.lease, '7587869379543394565');
  for (const c of ['gzip', 'zlib', 'lzw'] as const) {
    const stored = fixture(`delta.bin${compressionSuffix(c)}`);
    assert.deepEqual(await through(decompressStream(c), [stored]), bin, c);
    assert.deepEqual(await decompressBuffer(c, stored), bin, c);
  }
});

test('our delta bytes are the anchor’s, event by event and whole', () => {
  const json = fixture('delta.json').toString('latin1');
  assert.equal(`[${goEvents.map(eventJson).join(',')}]`, json);
  assert.deepEqual(encodeDelta(goEvents), fixture('delta.bin'));

  const builder = new DeltaBuilder();
  for (const ev of goEvents) builder.add(ev);
  assert.equal(builder.eventCount, goEvents.length);
  assert.equal(builder.byteLength, json.length);
  assert.equal(builder.firstRevision, 2);
  assert.equal(builder.lastRevision, 12);
  const chunks = builder.finish();
  assert.ok(chunks.length > 2, 'the payload is kept in chunks');
  assert.deepEqual(Buffer.concat(chunks), fixture('delta.bin'));
  assert.equal(builder.eventCount, 0);
  assert.equal(builder.byteLength, 0);
  assert.equal(builder.lastRevision, undefined);
  assert.deepEqual(decodeDelta(Buffer.concat(builder.finish())), [], 'an empty builder gives []');
});

test('LZW output is byte-identical to Go’s, and Go’s decodes', async () => {
  for (const name of LZW_FIXTURES) {
    const input = fixture(`lzw-${name}.bin`);
    const golden = fixture(`lzw-${name}.Z`);
    assert.ok((await compressBuffer('lzw', input)).equals(golden), `${name}: compressBuffer`);
    assert.ok((await through(compressStream('lzw'), cut(input, [1, 4095, 70_000, 300_000]))).equals(golden), `${name}: compressStream`);
    assert.ok((await decompressBuffer('lzw', golden)).equals(input), `${name}: decompressBuffer`);
    assert.ok((await through(decompressStream('lzw'), cut(golden, [2, 3, 5000]))).equals(input), `${name}: decompressStream`);
  }
});

test('LZW reads what only Go’s reader takes: no leading clear, a full table without a clear', async () => {
  assert.ok((await decompressBuffer('lzw', fixture('lzw-saturated.Z'))).equals(fixture('lzw-saturated.bin')));
});

test('LZW matches Go for every prefix length up to past the first table reset', async () => {
  const { source, sha256_12: digests } = JSON.parse(fixture('lzw-prefixes.json').toString()) as { source: string; sha256_12: string[] };
  const input = fixture(source);
  for (const [n, digest] of digests.entries()) {
    const ours = createHash('sha256')
      .update(await compressBuffer('lzw', input.subarray(0, n)))
      .digest('hex')
      .slice(0, 12);
    if (ours !== digest) assert.fail(`prefix of ${n} bytes: sha256 ${ours}…, Go's ${digest}…`);
  }
});

test('gzip and zlib: node reads ours, we read Go’s', async () => {
  const input = fixture('lzw-text.bin');
  assert.ok(gunzipSync(await through(compressStream('gzip', 9), [input])).equals(input));
  assert.ok(inflateSync(await compressBuffer('zlib', input, 1)).equals(input));
  assert.ok((await decompressBuffer('gzip', fixture('delta.bin.gz'))).equals(fixture('delta.bin')));
  assert.throws(() => compressStream('gzip', 12), RangeError);
});

test('suffixes name the policies', () => {
  assert.deepEqual(COMPRESSIONS.map(compressionSuffix), ['.gz', '.zlib', '.Z', '']);
  for (const c of COMPRESSIONS) assert.equal(compressionFromSuffix(compressionSuffix(c)), c);
  assert.equal(compressionFromSuffix('.bz2'), undefined);
});

/** Bytes that compress (few symbols, runs) or do not, long enough to pass LZW table resets. */
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 12_000 }),
  fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 600 })), { maxLength: 80 }).map((runs) => Buffer.concat(runs.map(([b, n]) => Buffer.alloc(n, b)))),
);

test('every policy round-trips, whatever the chunking', async () => {
  await fc.assert(
    fc.asyncProperty(payload, fc.constantFrom(...COMPRESSIONS), fc.array(fc.nat(), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 6 }), async (bytes, c: Compression, cutIn, cutOut) => {
      const input = Buffer.from(bytes);
      const packed = await through(compressStream(c), cut(input, cutIn));
      assert.ok((await through(decompressStream(c), cut(packed, cutOut))).equals(input));
      assert.ok((await decompressBuffer(c, await compressBuffer(c, input))).equals(input));
      // Go's LZW output does not depend on how it was written: neither may ours.
      if (c === 'lzw') assert.ok(packed.equals(await compressBuffer('lzw', input)));
    }),
    { numRuns: 150 },
  );
});

test('LZW decompression waits for a slow reader instead of buffering the expansion', async () => {
  const input = Buffer.alloc(20 * 1024 * 1024, 7);
  const packed = await compressBuffer('lzw', input);
  assert.ok(packed.length < 100_000);
  const d = decompressStream('lzw');
  d.end(packed);
  let total = 0;
  let largest = 0;
  // Each read takes all that is buffered, so the largest read is the most that was ever buffered.
  for await (const chunk of d as AsyncIterable<Buffer>) {
    total += chunk.length;
    largest = Math.max(largest, chunk.length);
    if (total < 2 * 1024 * 1024) await sleep(1);
  }
  assert.equal(total, input.length);
  assert.ok(largest < 256 * 1024, `buffered ${largest} bytes`);
});

const kvArb = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
  value: fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
  createRevision: fc.nat(),
  version: fc.nat(),
  lease: fc.oneof(fc.constant(0n), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })).map(String),
});
const timeArb = fc
  .tuple(
    fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2999-12-31T23:59:59Z'), noInvalidDate: true }),
    fc.option(fc.integer({ min: 0, max: 999_999_999 })),
    fc.constantFrom('Z', '+01:00', '-07:30'),
  )
  .map(([d, nanos, zone]) => `${d.toISOString().slice(0, 19)}${nanos === null ? '' : `.${String(nanos).padStart(9, '0').replace(/0+$/, '') || '0'}`}${zone}`);
const eventsArb = fc
  .array(fc.record({ type: fc.constantFrom('put' as const, 'delete' as const), kv: kvArb, prev: fc.option(kvArb), step: fc.nat({ max: 3 }), time: timeArb }), { maxLength: 30 })
  .map((raw) => {
    let rev = 1;
    return raw.map(({ type, kv, prev, step, time }): DeltaEvent => {
      rev += step;
      const ev: DeltaEvent = { type, kv: { ...kv, modRevision: rev }, time };
      if (prev) ev.prevKv = { ...prev, modRevision: Math.max(0, rev - 1) };
      return ev;
    });
  });

test('deltas round-trip: binary keys, int64 lease ids, any RFC 3339 time', () => {
  fc.assert(
    fc.property(eventsArb, (events) => {
      const payload = encodeDelta(events);
      assert.deepEqual(decodeDelta(payload), events);
      const builder = new DeltaBuilder();
      for (const ev of events) builder.add(ev);
      assert.equal(builder.byteLength, events.length === 0 ? 0 : payload.length - 32);
      assert.deepEqual(Buffer.concat(builder.finish()), payload);
    }),
    { numRuns: 300 },
  );
});

/** A payload with a valid trailer around any JSON text, to reach the checks behind the checksum. */
const sealed = (json: string): Buffer => Buffer.concat([Buffer.from(json), createHash('sha256').update(json).digest()]);

test('damaged deltas and streams fail with errors that say what is wrong', async () => {
  const bin = fixture('delta.bin');
  const flipped = Buffer.from(bin);
  flipped[1000] = (flipped[1000] as number) ^ 0x20;
  assert.throws(
    () => decodeDelta(flipped),
    (e: Error) => e instanceof DeltaFormatError && /^delta checksum mismatch: /.test(e.message),
  );
  assert.throws(() => decodeDelta(bin.subarray(0, bin.length - 1)), /delta checksum mismatch/);
  assert.throws(() => decodeDelta(bin.subarray(0, 31)), /delta too short: 31 bytes/);
  assert.throws(() => decodeDelta(sealed('{"etcdEvent":{}}')), /delta is not a JSON array of events \(it is an object\)/);
  assert.throws(() => decodeDelta(sealed('[{"etcdEvent":{"kv":{}}')), /delta is not JSON/);
  const t = '"time":"2024-01-01T00:00:00Z"';
  assert.throws(() => decodeDelta(sealed(`[{"etcdEvent":{"kv":{}},${t}},{"etcdEvent":{"type":2,"kv":{}},${t}}]`)), /delta event 1: etcdEvent\.type is 2/);
  assert.throws(() => decodeDelta(sealed(`[{"etcdEvent":{"kv":{"key":"not base64!"}},${t}}]`)), /delta event 0: etcdEvent\.kv\.key is not base64/);
  assert.throws(() => decodeDelta(sealed(`[{"etcdEvent":{"kv":{"mod_revision":"7"}},${t}}]`)), /delta event 0: etcdEvent\.kv\.mod_revision is "7"/);
  assert.throws(() => decodeDelta(sealed(`[{"etcdEvent":{"kv":{"lease":9223372036854775808}},${t}}]`)), /etcdEvent\.kv\.lease is "9223372036854775808", not an int64/);
  assert.throws(() => decodeDelta(sealed('[{"etcdEvent":{"kv":{}},"time":"yesterday"}]')), /delta event 0: time is "yesterday"/);
  assert.throws(() => decodeDelta(sealed(`[{${t}}]`)), /delta event 0: etcdEvent is missing/);

  // 9-bit codes, LSB first: clear, 'A', then 300 while only 258 is defined.
  const bad = Buffer.alloc(5);
  bad.writeUInt32LE((256 | (65 << 9) | (300 << 18)) >>> 0);
  await assert.rejects(decompressBuffer('lzw', bad), /^LzwError: lzw: invalid code 300 at byte 3$/);
  await assert.rejects(through(decompressStream('lzw'), [bad]), /lzw: invalid code 300 at byte 3/);
  const z = fixture('lzw-text.Z');
  await assert.rejects(through(decompressStream('lzw'), [z.subarray(0, z.length - 2)]), /lzw: unexpected end of data after \d+ bytes \(no EOF code\)/);
  await assert.rejects(through(decompressStream('gzip'), [fixture('delta.bin.gz').subarray(0, 1000)]), /^Error: gzip: unexpected end of file$/);
  await assert.rejects(decompressBuffer('zlib', Buffer.from('not zlib')), /zlib: incorrect header check/);
});

test('events are checked on the way in', () => {
  const ev = goEvents[0] as DeltaEvent;
  assert.throws(() => eventJson({ ...ev, kv: { ...ev.kv, lease: '1e3' } }), /kv\.lease "1e3" is not an int64/);
  assert.throws(() => eventJson({ ...ev, kv: { ...ev.kv, modRevision: 2 ** 53 } }), /kv\.modRevision/);
  assert.throws(() => eventJson({ ...ev, time: 'Tue, 01 Jan 2024' }), /not an RFC 3339 timestamp/);
  const builder = new DeltaBuilder();
  builder.add({ ...ev, kv: { ...ev.kv, modRevision: 5 } });
  builder.add({ ...ev, kv: { ...ev.kv, modRevision: 5 } });
  assert.throws(() => builder.add({ ...ev, kv: { ...ev.kv, modRevision: 4 } }), /revision 4 after revision 5/);
});

test("delta values' base64 is accepted exactly when it is standard padded base64, as Go writes it", () => {
  // The grammar, written apart from the decoder: whole quanta of the standard alphabet, '=' only as final padding.
  const grammar = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const near = fc.string({ unit: fc.constantFrom('A', 'z', '0', '+', '/', '=', '-', '_', ' ', '\n', '.', 'é'), maxLength: 24 });
  fc.assert(
    fc.property(near, (s) => {
      const decoded = decodeStdBase64(s);
      assert.equal(decoded !== undefined, grammar.test(s), JSON.stringify(s));
      if (decoded) assert.ok(decoded.equals(Buffer.from(s, 'base64')));
    }),
    { numRuns: 20_000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const b = Buffer.from(bytes);
      assert.ok(decodeStdBase64(b.toString('base64'))?.equals(b));
      // base64url's alphabet (Go's json never writes it) is refused whenever it differs.
      const url = b.toString('base64url');
      if (/[-_]/.test(url)) assert.equal(decodeStdBase64(url.padEnd(Math.ceil(url.length / 4) * 4, '=')), undefined);
    }),
    { numRuns: 5_000 },
  );
});
