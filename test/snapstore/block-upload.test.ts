import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { uploadBlocks } from '../../src/snapstore/block-upload.js';

/** A source of `total` bytes in chunks of `chunk`, counting what was read from it. */
function source(total: number, chunk: number): { stream: Readable; bytes: Buffer; read: () => number } {
  const bytes = randomBytes(total);
  let at = 0;
  const stream = new Readable({
    highWaterMark: chunk,
    read() {
      this.push(at < total ? bytes.subarray(at, (at += chunk)) : null);
    },
  });
  return { stream, bytes, read: () => at };
}

describe('uploadBlocks', () => {
  it('cuts the body into blocks of partSize, each with its md5, never more than `concurrency` in flight', async () => {
    const src = source(1_000_000, 7_000);
    const staged = new Map<number, Buffer>();
    let inFlight = 0;
    let most = 0;
    const result = await uploadBlocks(src.stream, {
      partSize: 100_000,
      concurrency: 3,
      async stage(i, block, md5) {
        inFlight++;
        most = Math.max(most, inFlight);
        assert.deepEqual(md5, createHash('md5').update(block).digest());
        await sleep(5);
        staged.set(i, Buffer.from(block));
        inFlight--;
      },
    });
    assert.deepEqual(result, { blocks: 10 });
    assert.equal(most, 3);
    assert.deepEqual(Buffer.concat([...staged.keys()].sort((a, b) => a - b).map((i) => staged.get(i) as Buffer)), src.bytes);
  });

  it('a body smaller than one part comes back whole, with nothing staged', async () => {
    const src = source(50_000, 7_000);
    const result = await uploadBlocks(src.stream, { partSize: 100_000, concurrency: 2, stage: () => assert.fail('staged') });
    assert.deepEqual(result, { whole: src.bytes });
  });

  it('a refused block stops reading the source and is the error thrown', async () => {
    const src = source(10_000_000, 10_000);
    const refused = new Error('block 2 refused');
    await assert.rejects(
      uploadBlocks(src.stream, {
        partSize: 100_000,
        concurrency: 2,
        stage: async (i) => {
          await sleep(2);
          if (i === 2) throw refused;
        },
      }),
      refused,
    );
    assert.ok(src.read() < 1_000_000, `read ${src.read()} bytes after the failure`);
  });
});
