import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client, type HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { listAll, StoreError, type SnapStore } from '../../src/snapstore/index.js';
import { FlakyProxy } from '../helpers/flaky-proxy.js';
import { AZURITE, azuriteFixture, FAKE_GCS, gcsFixture, MINIO, minioFixture, withPeer } from '../helpers/peer-stores.js';
import { blackHole, failingStream, hasMotoServer, localFixture, motoFixture, randomStream, s3Fixture, sha256Of, stallingStream, type StoreFixture } from '../helpers/store-fixtures.js';

// One contract, every provider: the same cases run against the local folder, S3 (MinIO, moto and
// s3rver, started by the tests), GCS (fake-gcs-server) and Azure Blob (Azurite), through the same
// `openStore` path `serve` uses. MinIO and fake-gcs-server are built by `npm run peers`; without
// them their cases skip.

const MB = 1 << 20;

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

function contract(makeFixture: () => Promise<StoreFixture>, provider: string): void {
  describe(`snapstore contract: ${provider}`, () => {
    let fx: StoreFixture;
    let store: SnapStore;
    before(async () => {
      fx = await makeFixture();
      store = await fx.open();
    });
    after(async () => {
      await store?.close();
      await fx?.stop();
    });

    it('round trip: put streams, head and get return what was put, with metadata', async () => {
      const body = Buffer.from('{"etcdEvent":"x"}\n'.repeat(1000));
      const put = await store.put('v2/Incr-00000001-00000010-1700000000.gz', Readable.from([body]), { metadata: { 'ebs-revision': '10' } });
      assert.equal(put.size, body.length);
      assert.match(put.sha256, /^[0-9a-f]{64}$/);
      assert.ok(put.verifiedBy.length > 0);
      const head = await store.head('v2/Incr-00000001-00000010-1700000000.gz');
      assert.equal(head?.size, body.length);
      assert.equal(head?.metadata['ebs-revision'], '10');
      const read = await sha256Of(await store.get('v2/Incr-00000001-00000010-1700000000.gz'));
      assert.equal(read.sha256, put.sha256);
      const listed = (await store.list('v2/')).objects.find((o) => o.name === 'v2/Incr-00000001-00000010-1700000000.gz');
      assert.equal(listed?.size, body.length);
      assert.deepEqual(listed?.metadata, {}, 'list carries no metadata on any provider');
    });

    it('a 0-byte object', async () => {
      const put = await store.put('empty', Readable.from([]));
      assert.equal(put.size, 0);
      assert.equal((await store.head('empty'))?.size, 0);
      assert.equal((await sha256Of(await store.get('empty'))).size, 0);
    });

    it('a 200 MB object, streamed both ways', async () => {
      const src = randomStream(200 * MB);
      const put = await store.put('v2/Full-00000000-00000100-1700000000', src.stream);
      assert.equal(put.size, 200 * MB);
      assert.equal(put.sha256, src.sha256());
      const read = await sha256Of(await store.get('v2/Full-00000000-00000100-1700000000'));
      assert.deepEqual(read, { sha256: put.sha256, size: 200 * MB });
    });

    it('lists more than 1,000 objects page by page, in order, by prefix', async () => {
      const names = Array.from({ length: 1050 }, (_, i) => `many/obj-${String(i).padStart(5, '0')}`);
      for (let i = 0; i < names.length; i += 25) {
        await Promise.all(names.slice(i, i + 25).map((n) => store.put(n, Readable.from([Buffer.from(n)]))));
      }
      await store.put('many-not/x', Readable.from([Buffer.from('x')]));
      const first = await store.list('many/');
      assert.equal(first.objects.length, 1000);
      assert.ok(first.nextPageToken, 'a second page is announced');
      const second = await store.list('many/', { pageToken: first.nextPageToken });
      assert.equal(second.objects.length, 50);
      assert.equal(second.nextPageToken, undefined);
      assert.deepEqual(
        [...first.objects, ...second.objects].map((o) => o.name),
        names,
      );
      const all: string[] = [];
      for await (const o of listAll(store, 'many/', 300)) all.push(o.name);
      assert.deepEqual(all, names);
    });

    it('an upload whose stream fails halfway leaves no object', async () => {
      await assert.rejects(store.put('v2/Full-interrupted', failingStream(20 * MB)));
      assert.equal(await store.head('v2/Full-interrupted'), undefined);
      const listed = (await store.list('v2/')).objects.map((o) => o.name);
      assert.ok(!listed.some((n) => n.includes('interrupted')), listed.join(','));
      await rejectsWith(store.get('v2/Full-interrupted'), 'not_found');
    });

    it('an aborted upload leaves no object', async () => {
      const ac = new AbortController();
      // The source stalls after 6 MB, so the abort always lands mid-upload, however fast the store is.
      setTimeout(() => ac.abort(), 200);
      await rejectsWith(store.put('v2/Full-aborted', stallingStream(6 * MB), { signal: ac.signal }), 'aborted');
      assert.equal(await store.head('v2/Full-aborted'), undefined);
    });

    it('a corrupted object is detected on read', async (t) => {
      if (!fx.corrupt) return void t.skip(`${provider}: ${fx.cannotCorrupt ?? 'its objects cannot be corrupted from outside'}`);
      const src = randomStream(3 * MB);
      await store.put('v2/Full-corrupt', src.stream);
      await fx.corrupt('v2/Full-corrupt');
      const stream = await store.get('v2/Full-corrupt');
      await rejectsWith(sha256Of(stream), 'checksum_mismatch');
    });

    it('a missing object is not_found; delete is idempotent', async () => {
      await rejectsWith(store.get('nope'), 'not_found', /nope/);
      assert.equal(await store.head('nope'), undefined);
      await store.put('doomed', Readable.from([Buffer.from('x')]));
      await store.delete('doomed');
      await store.delete('doomed');
      assert.equal(await store.head('doomed'), undefined);
    });

    it('names that could escape the prefix are refused before any I/O', async () => {
      for (const bad of ['../etc/passwd', '/abs', 'a//b', 'a/./b', 'a\\b', '', 'x\u0000y']) {
        await rejectsWith(store.put(bad, Readable.from([Buffer.from('x')])), 'invalid_name');
        await rejectsWith(store.get(bad), 'invalid_name');
      }
    });

    it('a missing bucket fails at once, naming the bucket', { skip: provider === 'local' && 'a folder is created on open' }, async () => {
      if (!fx.missingBucketFlags) return;
      const other = await fx.open(fx.missingBucketFlags);
      try {
        await rejectsWith(other.put('x', Readable.from([Buffer.from('x')])), 'no_such_bucket', /no-such-bucket-here/);
      } finally {
        await other.close();
      }
    });

    it('an endpoint nobody listens on fails fast with a clear error', { skip: provider === 'local' && 'a folder has no endpoint' }, async () => {
      if (!fx.unreachableFlags) return;
      const other = await fx.open({ ...(await fx.unreachableFlags()), 'store-timeout': '2s', 'store-max-attempts': '2' });
      const started = performance.now();
      try {
        const err = await rejectsWith(other.head('x'), 'unreachable', /ECONNREFUSED/);
        assert.ok(!/S3RVER|secret/i.test(err.message), 'credentials in the error');
      } finally {
        await other.close();
      }
      assert.ok(performance.now() - started < 10_000);
    });

    it('transient errors (5xx, throttling, resets) are retried; persistent ones fail with the cause', { skip: provider === 'local' && 'a folder has no transient faults' }, async () => {
      if (!fx.injectTransient) return;
      fx.injectTransient(2, { status: 503 });
      const put = await store.put('retried/a', Readable.from([Buffer.from('survives two 503s')]));
      assert.equal(put.size, 17);
      fx.injectTransient(1, { status: 500 });
      assert.equal((await store.head('retried/a'))?.size, 17);
      fx.injectTransient(1, 'reset');
      assert.equal((await sha256Of(await store.get('retried/a'))).size, 17);
      const strict = await fx.open({ 'store-max-attempts': '2' });
      try {
        fx.injectTransient(2, { status: 503 });
        const err = await rejectsWith(strict.head('retried/a'), 'failed');
        assert.equal(err.retryable, true);
      } finally {
        await strict.close();
      }
    });

    it('a black-holed endpoint (accepts, never answers) fails within the configured timeout', { skip: provider === 'local' && 'a folder has no endpoint' }, async () => {
      if (!fx.endpointFlags) return;
      const hole = await blackHole();
      const other = await fx.open({ ...fx.endpointFlags(hole.url), 'store-timeout': '2s', 'store-max-attempts': '1' });
      const started = performance.now();
      try {
        await rejectsWith(other.head('x'), 'timeout', /2000 ms/);
      } finally {
        await other.close();
        await hole.close();
      }
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 2 * 2_000 + 1_000, `took ${Math.round(elapsed)} ms`);
    });

    it('a frozen endpoint (SIGSTOP) fails within the configured timeout', async (t) => {
      if (!fx.freeze || !fx.thaw) return void t.skip(`${provider} does not run in a process of its own`);
      const other = await fx.open({ 'store-timeout': '2s', 'store-max-attempts': '1' });
      fx.freeze();
      const started = performance.now();
      try {
        await rejectsWith(other.head('x'), 'timeout', /2000 ms/);
      } finally {
        fx.thaw();
        await other.close();
      }
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 2 * 2_000 + 1_000, `took ${Math.round(elapsed)} ms`);
    });
  });
}

contract(localFixture, 'local');
contract(s3Fixture, 's3 (s3rver)');
withPeer(MINIO, 'snapstore contract: s3 (MinIO)', () => contract(minioFixture, 's3 (MinIO)'));
withPeer(FAKE_GCS, 'snapstore contract: gcs (fake-gcs-server)', () => contract(gcsFixture, 'gcs (fake-gcs-server)'));
withPeer(AZURITE, 'snapstore contract: azblob (Azurite)', () => contract(azuriteFixture, 'azblob (Azurite)'));

if (hasMotoServer()) contract(motoFixture, 's3 (moto_server)');
else {
  describe('snapstore contract: s3 (moto_server)', () => {
    it('runs against moto_server', { skip: 'moto_server is not on the PATH of this machine' }, () => {});
  });
}

describe('local store crash safety', () => {
  it('opening the store removes stale temporary files, not those another process is writing', async () => {
    const fx = await localFixture();
    const dir = fx.flags['store']?.replace('file://', '') as string;
    try {
      mkdirSync(join(dir, 'v2'), { recursive: true });
      const crashed = join(dir, 'v2', '.Full-1.ebs-tmp-aaaaaa');
      const writing = join(dir, 'v2', '.Full-2.ebs-tmp-bbbbbb');
      writeFileSync(crashed, 'left by a crash');
      const old = new Date(Date.now() - 120_000);
      utimesSync(crashed, old, old);
      writeFileSync(writing, 'being uploaded by another sidecar');
      const store = await fx.open();
      await store.close();
      assert.deepEqual(readdirSync(join(dir, 'v2')), ['.Full-2.ebs-tmp-bbbbbb']);
    } finally {
      await fx.stop();
    }
  });

  it('leaves no temporary file behind after a failed upload', async () => {
    const fx = await localFixture();
    const store = await fx.open();
    try {
      await assert.rejects(store.put('v2/x', failingStream(5 * MB)));
      const dir = store.url.replace('file://', '') + '/v2';
      assert.deepEqual(readdirSync(dir), []);
    } finally {
      await fx.stop();
    }
  });
});

describe('S3 server-side encryption (moto_server)', { skip: !hasMotoServer() && 'moto_server is not on the PATH' }, () => {
  let fx: StoreFixture;
  let proxy: FlakyProxy;
  before(async () => {
    fx = await motoFixture();
    // Requests pass through a recording proxy: what the store says it recorded is checked, and for
    // SSE-C (which moto does not report back) what the client sent.
    proxy = await FlakyProxy.start(fx.flags['s3-endpoint'] as string);
  });
  after(async () => {
    await proxy?.stop();
    await fx?.stop();
  });

  const keyDir = mkdtempSync(join(tmpdir(), 'ebs-ssec-'));
  const keyFile = join(keyDir, 'sse-c.key');
  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('base64'));
  const keyMd5 = createHash('md5').update(key).digest('base64');
  const cases: Array<[string, Record<string, string>, string, string]> = [
    ['SSE-S3', { 's3-sse': 'AES256' }, 'x-amz-server-side-encryption', 'AES256'],
    ['SSE-KMS', { 's3-sse': 'aws:kms' }, 'x-amz-server-side-encryption', 'aws:kms'],
    ['SSE-C', { 's3-sse-c-key-file': keyFile }, 'x-amz-server-side-encryption-customer-key-md5', keyMd5],
  ];
  for (const [what, flags, header, value] of cases) {
    it(`${what}: every write and read carries it, and the object reads back intact`, async () => {
      const store = await fx.open({ ...flags, 's3-endpoint': proxy.url });
      try {
        const from = proxy.seen.length;
        const src = randomStream(12 * MB); // multipart: CreateMultipartUpload + UploadPart x 2 + Complete
        const put = await store.put(`sse/${what}`, src.stream);
        assert.equal((await sha256Of(await store.get(`sse/${what}`))).sha256, src.sha256());
        const sent = proxy.seen.slice(from);
        const creates = sent.filter((r) => r.method === 'POST' && r.url.includes('uploads'));
        assert.equal(creates.length, 1);
        assert.equal(creates[0]?.headers[header], value);
        if (what === 'SSE-C') {
          // SSE-C must accompany every part and every read, or the store refuses them.
          for (const r of sent.filter((r) => r.method === 'PUT' || (r.method === 'GET' && !r.url.includes('list-type')))) assert.equal(r.headers[header], value, `${r.method} ${r.url}`);
        } else {
          const s3 = new S3Client({ endpoint: fx.flags['s3-endpoint'], forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
          const head: HeadObjectCommandOutput = await s3.send(new HeadObjectCommand({ Bucket: 'ebs-contract', Key: `backups/main/${put.name}` }));
          s3.destroy();
          assert.equal(head.ServerSideEncryption, value, 'the store recorded the encryption');
        }
      } finally {
        await store.close();
      }
    });
  }
});
