import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { decompressStream } from '../../src/snapshot/compression.js';
import { runningGzipBlocks, ParallelGzip } from '../../src/snapshot/parallel-gzip.js';
import { goGunzip, gzipMembers, hasGo } from '../helpers/gzip.js';

const KiB = 1024;

/** Half random, half text: what a db of Kubernetes objects looks like to deflate. */
function sample(bytes: number): Buffer {
  const text = Buffer.from('{"kind":"Pod","metadata":{"name":"web-0","namespace":"default"},"spec":{}}'.repeat(Math.ceil(bytes / 150)));
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4 * KiB) {
    randomBytes(2 * KiB).copy(out, i);
    text.copy(out, i + 2 * KiB, 0, Math.min(2 * KiB, Math.max(0, bytes - i - 2 * KiB)));
  }
  return out;
}

/** Chunks of odd sizes, as a gRPC stream hands them out. */
function* chunks(buf: Buffer, size = 7777): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c as Buffer);
  return out;
}

async function nothingLeftRunning(): Promise<void> {
  for (let i = 0; i < 200 && runningGzipBlocks() > 0; i++) await sleep(10);
  assert.equal(runningGzipBlocks(), 0, 'a block compression outlived its stream');
}

describe('parallel gzip', () => {
  it('writes one member per block, in order, that gunzip reads back as the input (streaming and whole)', async () => {
    const input = sample(3 * 1024 * KiB + 123);
    const gz = Buffer.concat(await collect(Readable.from(chunks(input)).pipe(new ParallelGzip({ level: 6, parallel: 3, blockBytes: 256 * KiB }))));
    assert.equal(gzipMembers(gz), Math.ceil(input.length / (256 * KiB)));
    assert.ok(gunzipSync(gz).equals(input));
    const streamed = Buffer.concat(await collect(Readable.from([gz]).pipe(decompressStream('gzip'))));
    assert.ok(streamed.equals(input));
    await nothingLeftRunning();
  });

  it("Go's gzip.Reader (gardener's) reads the members back as the input, byte for byte", { skip: !hasGo && 'no Go toolchain', timeout: 120_000 }, async () => {
    const input = sample(2 * 1024 * KiB + 99);
    const gz = Buffer.concat(await collect(Readable.from(chunks(input)).pipe(new ParallelGzip({ parallel: 2, blockBytes: 300 * KiB }))));
    assert.ok(gzipMembers(gz) >= 7);
    assert.ok((await goGunzip(gz)).equals(input));
    await nothingLeftRunning();
  });

  it('an empty input is one empty member', async () => {
    const gz = Buffer.concat(await collect(Readable.from([]).pipe(new ParallelGzip({ parallel: 1 }))));
    assert.equal(gunzipSync(gz).length, 0);
    await nothingLeftRunning();
  });

  it('keeps backpressure: a slow reader holds the writer to a few blocks ahead', async () => {
    const block = 64 * KiB;
    const gzip = new ParallelGzip({ parallel: 2, blockBytes: block, inFlight: 4 });
    let produced = 0;
    let membersRead = 0;
    let worst = 0;
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 256; i++) {
          produced += 16 * KiB;
          worst = Math.max(worst, produced - membersRead * block);
          yield randomBytes(16 * KiB);
        }
      })(),
    );
    const slow = new Writable({
      highWaterMark: 1,
      write(_chunk: Buffer, _enc, done) {
        membersRead++;
        setTimeout(done, 5);
      },
    });
    await pipeline(source, gzip, slow);
    assert.equal(membersRead, 64);
    // In flight (4 blocks), the block being filled, and the streams' own buffers (16 KiB each side, 16 members read side).
    assert.ok(worst <= 24 * block, `the writer ran ${worst} bytes ahead of the reader`);
    await nothingLeftRunning();
  });

  it('an abort mid-stream fails the pipeline and leaves nothing running', async () => {
    const ac = new AbortController();
    let sent = 0;
    const source = Readable.from(
      (function* () {
        for (;;) {
          sent += 64 * KiB;
          if (sent > 2 * 1024 * KiB) ac.abort();
          yield randomBytes(64 * KiB);
        }
      })(),
    );
    await assert.rejects(pipeline(source, new ParallelGzip({ parallel: 2, blockBytes: 128 * KiB }), new Writable({ write: (_c, _e, done) => done() }), { signal: ac.signal }), { name: 'AbortError' });
    await nothingLeftRunning();
  });

  it('a failing source fails the pipeline and leaves nothing running', async () => {
    const source = Readable.from(
      (function* () {
        yield randomBytes(300 * KiB);
        throw new Error('etcd went away');
      })(),
    );
    await assert.rejects(pipeline(source, new ParallelGzip({ parallel: 2, blockBytes: 128 * KiB }), new Writable({ write: (_c, _e, done) => done() })), /etcd went away/);
    await nothingLeftRunning();
  });

  it('a destroyed stream leaves nothing running', async () => {
    const gzip = new ParallelGzip({ parallel: 2 });
    gzip.write(randomBytes(3 * 1024 * KiB));
    gzip.destroy();
    await nothingLeftRunning();
  });
});
