import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DigestStream } from '../../src/snapstore/digest.js';
import { nameProblem } from '../../src/snapstore/names.js';
import { localPath } from '../../src/snapstore/open.js';

async function digestOf(chunks: Buffer[], partSize?: number): Promise<DigestStream> {
  const d = new DigestStream({ md5: true, ...(partSize ? { partSize } : {}) });
  await pipeline(Readable.from(chunks), d, async (source) => {
    for await (const _ of source) {
      // drain
    }
  });
  return d;
}

/** S3's multipart ETag, the slow obvious way: md5 of the concatenated part md5s, then `-N`. */
function expectedEtag(data: Buffer, partSize: number): string {
  const parts: Buffer[] = [];
  for (let o = 0; o < data.length; o += partSize)
    parts.push(
      createHash('md5')
        .update(data.subarray(o, o + partSize))
        .digest(),
    );
  return `${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}`;
}

describe('DigestStream', () => {
  it('hashes the same whatever the chunking, and computes the S3 multipart ETag', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 0, maxLength: 5000 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 20 }),
        fc.integer({ min: 1, max: 1500 }),
        async (bytes, cuts, partSize) => {
          const data = Buffer.from(bytes);
          const chunks: Buffer[] = [];
          let o = 0;
          for (const c of cuts) {
            if (o >= data.length) break;
            chunks.push(data.subarray(o, o + c));
            o += c;
          }
          if (o < data.length) chunks.push(data.subarray(o));
          const d = (await digestOf(chunks, partSize)).result;
          assert.equal(d.size, data.length);
          assert.equal(d.sha256Hex, createHash('sha256').update(data).digest('hex'));
          assert.equal(d.md5Hex, createHash('md5').update(data).digest('hex'));
          assert.equal(d.multipartEtag, data.length === 0 ? undefined : expectedEtag(data, partSize));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('fails the stream when its end check says so', async () => {
    const d = new DigestStream({ onEnd: () => new Error('checksum says no') });
    await assert.rejects(
      pipeline(Readable.from([Buffer.from('x')]), d, async (s) => {
        for await (const _ of s) {
          // drain
        }
      }),
      /checksum says no/,
    );
  });
});

describe('object names', () => {
  it('accepts the snapshot layout', () => {
    for (const ok of ['v2/Full-00000000-00000010-1700000000.gz', 'v2/Incr-00000011-00000020-1700000005', 'members/m1.json', 'a b/c']) assert.equal(nameProblem(ok), undefined, ok);
  });
  it('refuses what could escape the prefix or mean different objects on different stores', () => {
    for (const bad of ['', '/etc/passwd', '../x', 'a/../b', 'a/./b', 'a//b', 'a/', 'a\\b', 'a\nb', 'x'.repeat(1025)]) assert.notEqual(nameProblem(bad), undefined, bad);
  });
});

describe('file:// URLs', () => {
  it('read absolute and relative paths', () => {
    assert.equal(localPath('file:///var/backups/etcd'), '/var/backups/etcd');
    assert.equal(localPath('file://./backups'), `${process.cwd()}/backups`);
    assert.equal(localPath('file:///with%20space'), '/with space');
  });
});
