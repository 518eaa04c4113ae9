import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { DeltaDecoder } from '../../src/snapshot/delta-decoder.js';
import { decodeDelta, encodeDelta, type DeltaEvent } from '../../src/snapshot/delta-format.js';

// Seeded so that a failure can be replayed: FC_SEED=<seed printed below>.
const seed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`delta-decoder property seed: ${seed} (FC_SEED=${seed} replays it)`);
const runs = (numRuns: number): fc.Parameters<unknown> => ({ seed, numRuns });

/** The streaming decoder fed `chunks`; the error it ends with, if any, as a string. */
function streamed(chunks: Buffer[], skipAfter?: number): { events: DeltaEvent[]; error?: string } {
  const d = new DeltaDecoder();
  const events: DeltaEvent[] = [];
  try {
    for (const c of chunks) {
      events.push(...d.write(c));
      if (skipAfter !== undefined && events.length >= skipAfter) d.skipRest();
    }
    d.end();
    return { events };
  } catch (err) {
    return { events, error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

function whole(payload: Buffer): { events: DeltaEvent[]; error?: string } {
  try {
    return { events: decodeDelta(payload) };
  } catch (err) {
    return { events: [], error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

function cut(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  return [...at, buf.length].map((end, i) => buf.subarray(i === 0 ? 0 : (at[i - 1] as number), end));
}

const bytesArb = (max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const kvArb = fc.record({
  key: bytesArb(24),
  // Now and then a value spanning many chunks.
  value: fc.oneof({ weight: 5, arbitrary: bytesArb(40) }, { weight: 1, arbitrary: bytesArb(3000) }),
  createRevision: fc.nat(),
  version: fc.nat(),
  // Lease ids are int64: most past 2^53, where a JSON number would lose digits.
  lease: fc.oneof(fc.constant(0n), fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })).map(String),
});
const eventsArb = fc.array(fc.record({ del: fc.boolean(), kv: kvArb, prev: fc.option(kvArb), step: fc.nat({ max: 2 }), secs: fc.nat({ max: 10_000_000 }) }), { maxLength: 25 }).map((raw) => {
  let rev = 1;
  return raw.map(({ del, kv, prev, step, secs }): DeltaEvent => {
    rev += step;
    const ev: DeltaEvent = { type: del ? 'delete' : 'put', kv: { ...kv, modRevision: rev }, time: new Date(Date.UTC(2026, 0, 1) + secs * 1000).toISOString() };
    if (prev) ev.prevKv = { ...prev, modRevision: Math.max(0, rev - 1) };
    return ev;
  });
});
/** Cut points: anywhere, single bytes, and right around the trailer. */
const cutsArb = fc.array(fc.oneof(fc.nat(), fc.integer({ min: -40, max: 0 })), { maxLength: 40 });

function cutsOf(payload: Buffer, points: number[]): Buffer[] {
  return cut(
    payload,
    points.map((p) => (p <= 0 ? payload.length - 32 + p : p)).filter((p) => p >= 0),
  );
}

test('the streaming decoder gives what the whole-buffer decoder gives, cut anywhere', () => {
  fc.assert(
    fc.property(eventsArb, cutsArb, (events, points) => {
      const payload = encodeDelta(events);
      const expected = decodeDelta(payload);
      assert.deepEqual(streamed(cutsOf(payload, points)), { events: expected });
      // One byte at a time: every boundary at once.
      if (payload.length < 4000) assert.deepEqual(streamed([...payload].map((b) => Buffer.of(b))), { events: expected });
    }),
    runs(300),
  );
});

test('lease ids past 2^53 keep every digit', () => {
  const lease = '9223372036854775807';
  const ev: DeltaEvent = { type: 'put', kv: { key: Buffer.from('k'), value: Buffer.from('v'), createRevision: 2, modRevision: 2, version: 1, lease }, time: '2026-01-01T00:00:00Z' };
  const { events } = streamed(cut(encodeDelta([ev]), [3, 70, 71]));
  assert.equal(events[0]?.kv.lease, lease);
});

/** A payload with a valid trailer around any JSON text. */
const sealed = (json: string): Buffer => Buffer.concat([Buffer.from(json), createHash('sha256').update(json).digest()]);

test('damaged payloads: the streaming decoder refuses whatever the whole-buffer decoder refuses', () => {
  const mutation = fc.record({ at: fc.nat(), to: fc.constantFrom(' ', ',', ']', '[', '{', '}', '"', ':', 'x', '1', '\\', '\n', ''), drop: fc.nat({ max: 3 }) });
  fc.assert(
    fc.property(eventsArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), cutsArb, (events, mutations, points) => {
      let json = encodeDelta(events).subarray(0, -32).toString('latin1');
      for (const m of mutations) {
        const at = m.at % (json.length + 1);
        json = json.slice(0, at) + m.to + json.slice(at + m.drop);
      }
      const payload = sealed(json);
      const before = whole(payload);
      const after = streamed(cutsOf(payload, points));
      if (before.error === undefined) assert.deepEqual(after, before, json);
      else assert.ok(after.error !== undefined, `${json}\nwhole: ${before.error}\nstreamed: accepted`);
    }),
    runs(500),
  );
});

test('a damaged trailer or a short payload is reported as the whole-buffer decoder reports it', () => {
  fc.assert(
    fc.property(eventsArb, fc.nat(), cutsArb, (events, at, points) => {
      const payload = Buffer.from(encodeDelta(events));
      const i = at % payload.length;
      payload[i] = (payload[i] as number) ^ 0x01;
      assert.equal(streamed(cutsOf(payload, points)).error, whole(payload).error);
      const short = payload.subarray(0, at % 32);
      assert.equal(streamed(cutsOf(short, points)).error, whole(short).error);
    }),
    runs(200),
  );
  for (const json of ['{"etcdEvent":{}}', '"x"', 'null', '12', 'true', '[{"etcdEvent":{"kv":{}}', '[', '[]]', '[,]', '[] x']) {
    const before = whole(sealed(json)).error;
    const after = streamed([sealed(json)]).error;
    assert.ok(before && after, json);
    // The same kind of refusal; the messages differ only in how a JSON syntax error is worded.
    assert.equal(after.replace(/not JSON: .*/, 'not JSON'), before.replace(/not JSON: .*/, 'not JSON'), json);
  }
});

test('events skipped after a point still have their trailer checked', () => {
  fc.assert(
    fc.property(eventsArb, fc.nat(), cutsArb, (events, stopAt, points) => {
      const payload = encodeDelta(events);
      assert.equal(streamed(cutsOf(payload, points), stopAt).error, undefined);
      const bad = Buffer.from(payload);
      bad[bad.length - 33] = (bad[bad.length - 33] as number) ^ 0x01;
      assert.match(streamed(cutsOf(bad, points), stopAt).error ?? '', /delta checksum mismatch/);
    }),
    runs(100),
  );
});

test('the Go-written fixture decodes the same in 1,000-byte chunks', () => {
  const bin = readFileSync(new URL('../fixtures/anchor/delta.bin', import.meta.url));
  const chunks = Array.from({ length: Math.ceil(bin.length / 1000) }, (_, i) => bin.subarray(i * 1000, (i + 1) * 1000));
  assert.deepEqual(streamed(chunks), { events: decodeDelta(bin) });
});
