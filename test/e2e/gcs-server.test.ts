/**
 * Fidelity tests for test/helpers/gcs-server.ts: the REAL @google-cloud/storage client drives the
 * fake, so what passes here is what the library actually sends and accepts. Where the library
 * cannot reach a server feature (uploadType=media, the raw resumable protocol), plain fetch does.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../helpers/cluster.js';
import { CRC32C, Storage, type Bucket } from '@google-cloud/storage';
import { crc32cBase64, crc32cUpdate, FakeGcsServer, type FakeGcsRequestLogEntry } from '../helpers/gcs-server.js';
import { failingStream } from '../helpers/store-fixtures.js';

const MiB = 1024 * 1024;

type ErrorWithCode = Error & { code?: unknown; errors?: unknown; status?: unknown };

async function rejection(p: Promise<unknown>): Promise<ErrorWithCode> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error, `rejected with a non-Error: ${String(e)}`);
    return e;
  }
  return assert.fail('expected the operation to fail');
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('base64');
}

function libCrc32c(b: Buffer): string {
  const c = new CRC32C();
  c.update(b);
  return c.toString();
}

/** Poll until `cond` holds: the server sees client requests a little after the client gives up on them. */
async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  await eventually(what, async () => (cond() ? true : undefined), timeoutMs, 20);
}

/** A source that yields `data` in `piece`-sized reads. */
function sourceOf(data: Buffer, piece = 64 * 1024): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= data.length) {
        this.push(null);
        return;
      }
      this.push(data.subarray(at, at + piece));
      at += piece;
    },
  });
}

describe('FakeGcsServer driven by @google-cloud/storage', () => {
  let server: FakeGcsServer;
  let storage: Storage;
  let bucketSeq = 0;

  // Each test gets its own bucket so listings and request-log slices do not interfere.
  const freshBucket = (): Bucket => {
    const name = `bkt-${++bucketSeq}`;
    server.createBucket(name);
    return storage.bucket(name);
  };
  const requestsSince = (mark: number): FakeGcsRequestLogEntry[] => server.requests.slice(mark);

  before(async () => {
    server = await FakeGcsServer.start({ buckets: ['initial'] });
    // maxRetryDelay caps the library's 1-2 s backoff; below 1 s its async-retry throws
    // "minTimeout is greater than maxTimeout" on uploads, so 1 is the floor.
    storage = new Storage({ apiEndpoint: server.url, projectId: 'test', retryOptions: { maxRetryDelay: 1 } });
  });
  after(async () => {
    await server?.stop();
  });

  it('crc32cUpdate agrees with the library CRC32C, including when fed incrementally', () => {
    for (const size of [0, 1, 7, 8, 9, 1000, 65536 + 3]) {
      const b = randomBytes(size);
      assert.equal(crc32cBase64(crc32cUpdate(0, b)), libCrc32c(b), `size ${size}`);
      const split = Math.floor(size / 3);
      assert.equal(crc32cBase64(crc32cUpdate(crc32cUpdate(0, b.subarray(0, split)), b.subarray(split))), libCrc32c(b));
    }
    assert.equal(crc32cBase64(crc32cUpdate(0, Buffer.from('data'))), 'rth90Q==');
  });

  it('serves buckets: metadata for a known one, a GCS-shaped 404 for an unknown one', async () => {
    const [meta] = await storage.bucket('initial').getMetadata();
    assert.equal(meta.name, 'initial');
    assert.equal(meta.kind, 'storage#bucket');
    assert.deepEqual(await storage.bucket('initial').exists(), [true]);
    assert.deepEqual(await storage.bucket('no-such-bucket').exists(), [false]);

    const err = await rejection(storage.bucket('no-such-bucket').getMetadata());
    assert.equal(err.code, 404);
    assert.equal(err.message, 'The specified bucket does not exist.');

    await storage.createBucket('made-by-client');
    assert.deepEqual(await storage.bucket('made-by-client').exists(), [true]);
    assert.equal((await rejection(storage.createBucket('made-by-client'))).code, 409);
    await storage.bucket('made-by-client').delete();
    assert.deepEqual(await storage.bucket('made-by-client').exists(), [false]);

    const res = await fetch(`${server.url}/storage/v1/b/no-such-bucket`);
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { code: number; message: string; errors: Array<{ reason: string; domain: string }> } };
    assert.equal(body.error.code, 404);
    assert.equal(body.error.message, 'The specified bucket does not exist.');
    assert.equal(body.error.errors[0]?.reason, 'notFound');
    assert.equal(body.error.errors[0]?.domain, 'global');
  });

  it('uploads with uploadType=multipart (resumable: false) and round-trips bytes, metadata and the object resource', async () => {
    const bucket = freshBucket();
    const name = 'dir/sub dir/ünïcødé #?%&+=.bin';
    const data = randomBytes(100 * 1024 + 3);
    const mark = server.requests.length;
    await bucket.file(name).save(data, {
      resumable: false,
      contentType: 'application/x-etcd-snapshot',
      metadata: { metadata: { revision: '42', kind: 'full' } },
    });
    const uploads = requestsSince(mark).filter((r) => r.path === `/upload/storage/v1/b/${bucket.name}/o`);
    assert.equal(uploads.length, 1);
    assert.match(uploads[0]?.search ?? '', /uploadType=multipart/);
    assert.match(uploads[0]?.headers.contentType ?? '', /^multipart\/related; boundary=/);

    const [meta] = await bucket.file(name).getMetadata();
    assert.equal(meta.kind, 'storage#object');
    assert.equal(meta.name, name);
    assert.equal(meta.bucket, bucket.name);
    assert.equal(meta.id, `${bucket.name}/${name}/${String(meta.generation)}`);
    assert.equal(meta.selfLink, `${server.url}/storage/v1/b/${bucket.name}/o/${encodeURIComponent(name)}`);
    assert.match(String(meta.generation), /^\d{16}$/);
    assert.equal(meta.metageneration, '1');
    assert.equal(meta.contentType, 'application/x-etcd-snapshot');
    assert.equal(meta.size, String(data.length)); // a string, as GCS sends it
    assert.equal(meta.md5Hash, md5(data));
    assert.equal(meta.crc32c, libCrc32c(data));
    assert.ok(meta.etag);
    assert.ok(!Number.isNaN(Date.parse(String(meta.timeCreated))));
    assert.ok(!Number.isNaN(Date.parse(String(meta.updated))));
    assert.deepEqual(meta.metadata, { revision: '42', kind: 'full' });

    const [downloaded] = await bucket.file(name).download({ validation: 'crc32c' });
    assert.ok(downloaded.equals(data));
    assert.ok(server.objectBytes(bucket.name, name)?.equals(data));
    // With a custom endpoint the library sends no credentials at all.
    assert.ok(server.requests.every((r) => r.headers.authorization === undefined));
  });

  it('accepts uploadType=media (raw HTTP), which the library itself never uses', async () => {
    const bucket = freshBucket();
    const data = randomBytes(3000);
    const res = await fetch(`${server.url}/upload/storage/v1/b/${bucket.name}/o?uploadType=media&name=${encodeURIComponent('m/one')}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: data,
    });
    assert.equal(res.status, 200);
    const resource = (await res.json()) as { name: string; size: string; md5Hash: string };
    assert.equal(resource.name, 'm/one');
    assert.equal(resource.size, '3000');
    assert.equal(resource.md5Hash, md5(data));
    const [downloaded] = await bucket.file('m/one').download({ validation: 'md5' });
    assert.ok(downloaded.equals(data));
  });

  it('resumable upload without chunkSize: one session POST, then a single streaming PUT "bytes 0-*/*"', async () => {
    const bucket = freshBucket();
    const data = randomBytes(3 * MiB + 1);
    const mark = server.requests.length;
    await pipeline(sourceOf(data), bucket.file('single').createWriteStream({ resumable: true, metadata: { metadata: { a: 'b' } } }));
    const log = requestsSince(mark);
    const posts = log.filter((r) => r.method === 'POST');
    const puts = log.filter((r) => r.method === 'PUT');
    assert.equal(posts.length, 1);
    assert.match(posts[0]?.search ?? '', /uploadType=resumable/);
    assert.deepEqual(
      puts.map((r) => [r.headers.contentRange, r.status]),
      [['bytes 0-*/*', 200]],
    );
    const [meta] = await bucket.file('single').getMetadata();
    assert.equal(meta.size, String(data.length));
    assert.deepEqual(meta.metadata, { a: 'b' });
    const [downloaded] = await bucket.file('single').download({ validation: 'md5' });
    assert.ok(downloaded.equals(data));
    assert.equal(server.openUploadSessions(), 0);
  });

  it('resumable chunked upload of 20 MiB in 8 MiB chunks: 308 + Range per chunk, validated download', async () => {
    const bucket = freshBucket();
    const data = randomBytes(20 * MiB);
    const mark = server.requests.length;
    await pipeline(sourceOf(data), bucket.file('chunked').createWriteStream({ resumable: true, chunkSize: 8 * MiB }));
    const puts = requestsSince(mark).filter((r) => r.method === 'PUT');
    assert.deepEqual(
      puts.map((r) => [r.headers.contentRange, r.status]),
      [
        ['bytes 0-8388607/*', 308],
        ['bytes 8388608-16777215/*', 308],
        ['bytes 16777216-20971519/20971520', 200],
      ],
    );
    const [meta] = await bucket.file('chunked').getMetadata();
    assert.equal(meta.crc32c, libCrc32c(data));
    assert.equal(meta.md5Hash, md5(data));
    // The library checks the x-goog-hash header against what it received.
    const [viaCrc] = await bucket.file('chunked').download({ validation: 'crc32c' });
    assert.ok(viaCrc.equals(data));
    const [viaMd5] = await bucket.file('chunked').download({ validation: 'md5' });
    assert.ok(viaMd5.equals(data));
  });

  it('persists non-final chunks only to a 256 KiB boundary, and the library resends from the Range header', async () => {
    const bucket = freshBucket();
    const data = randomBytes(MiB + 5);
    const mark = server.requests.length;
    await pipeline(sourceOf(data), bucket.file('odd-chunks').createWriteStream({ resumable: true, chunkSize: 300 * 1024 }));
    const puts = requestsSince(mark).filter((r) => r.method === 'PUT');
    // First chunk 0..307199 is kept only to 262143, so the second one starts at 262144.
    assert.equal(puts[0]?.headers.contentRange, 'bytes 0-307199/*');
    assert.equal(puts[0]?.status, 308);
    assert.match(puts[1]?.headers.contentRange ?? '', /^bytes 262144-/);
    assert.equal(puts.at(-1)?.status, 200);
    const [downloaded] = await bucket.file('odd-chunks').download({ validation: 'crc32c' });
    assert.ok(downloaded.equals(data));
  });

  it('raw resumable protocol: 308/Range, status queries, and the object appears only when the upload completes', async () => {
    const bucket = freshBucket();
    const file = bucket.file('raw/resumable');
    const data = randomBytes(700 * 1024);
    const [uri] = await file.createResumableUpload({ metadata: { contentType: 'text/x-test', metadata: { step: 'raw' } } });
    assert.ok(uri.startsWith(`${server.url}/upload/storage/v1/b/${bucket.name}/o?`), uri);
    assert.equal(server.openUploadSessions(), 1);

    const put = (range: string, body?: Buffer): Promise<Response> =>
      fetch(uri, { method: 'PUT', headers: { 'Content-Range': range }, ...(body ? { body } : {}) });

    let res = await put('bytes */*');
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), null); // nothing persisted yet

    res = await put('bytes 0-307199/*', data.subarray(0, 300 * 1024));
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), 'bytes=0-262143');
    assert.deepEqual(await file.exists(), [false]);
    assert.deepEqual((await bucket.getFiles())[0], []);

    res = await put(`bytes */${data.length}`);
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('range'), 'bytes=0-262143');

    // Overlapping bytes are ignored, as GCS does; this final request completes the object.
    res = await put(`bytes 200000-${data.length - 1}/${data.length}`, data.subarray(200000));
    assert.equal(res.status, 200);
    const resource = (await res.json()) as { size: string; contentType: string; metadata: Record<string, string> };
    assert.equal(resource.size, String(data.length));
    assert.equal(resource.contentType, 'text/x-test');
    assert.deepEqual(resource.metadata, { step: 'raw' });
    assert.equal(server.openUploadSessions(), 0);

    // A finished session answers a status query with the object.
    res = await put('bytes */*');
    assert.equal(res.status, 200);
    await res.arrayBuffer();

    const [downloaded] = await file.download({ validation: 'crc32c' });
    assert.ok(downloaded.equals(data));

    // An upload starting beyond what was persisted is refused.
    const [uri2] = await bucket.file('raw/2').createResumableUpload();
    const bad = await fetch(uri2, { method: 'PUT', headers: { 'Content-Range': 'bytes 10-19/*' }, body: Buffer.alloc(10) });
    assert.equal(bad.status, 400);
    await bad.arrayBuffer();
    const cancel = await fetch(uri2, { method: 'DELETE' });
    assert.equal(cancel.status, 499);
    assert.equal(server.openUploadSessions(), 0);
  });

  it('supports Range downloads', async () => {
    const bucket = freshBucket();
    const data = randomBytes(10_000);
    server.putObject(bucket.name, 'r', data);
    const [mid] = await bucket.file('r').download({ start: 100, end: 199 });
    assert.ok(mid.equals(data.subarray(100, 200)));
    const [tail] = await bucket.file('r').download({ start: 9000 });
    assert.ok(tail.equals(data.subarray(9000)));
    const res = await fetch(`${server.url}/storage/v1/b/${bucket.name}/o/r?alt=media`, { headers: { Range: 'bytes=-10' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 9990-9999/${data.length}`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(9990)));
    const unsatisfiable = await fetch(`${server.url}/storage/v1/b/${bucket.name}/o/r?alt=media`, { headers: { Range: 'bytes=20000-' } });
    assert.equal(unsatisfiable.status, 416);
    await unsatisfiable.arrayBuffer();
  });

  it('lists 1,050 objects in lexicographic order: autoPaginate, manual pageToken, default and capped page size', async () => {
    const bucket = freshBucket();
    const names: string[] = [];
    for (let i = 0; i < 1050; i++) names.push(`snap/${String(i).padStart(5, '0')}`);
    names.push('snap/Z', 'snap/a', 'snap/é', 'snap/\u{1F600}', 'snap/\uFF21'); // orders differ between UTF-16 and UTF-8
    for (const n of names) server.putObject(bucket.name, n, n);
    const expected = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.equal(expected.at(-1), 'snap/\u{1F600}'); // UTF-8 order puts the astral char after U+FF21

    let mark = server.requests.length;
    const [all] = await bucket.getFiles();
    assert.deepEqual(
      all.map((f) => f.name),
      expected,
    );
    const listCalls = requestsSince(mark).filter((r) => r.path.endsWith('/o'));
    assert.equal(listCalls.length, 2); // 1000 (the default page) + 55

    const pageSizes: number[] = [];
    const seen: string[] = [];
    let query: { autoPaginate: boolean; maxResults: number; pageToken?: string } = { autoPaginate: false, maxResults: 400 };
    for (;;) {
      const [files, next] = await bucket.getFiles(query);
      pageSizes.push(files.length);
      seen.push(...files.map((f) => f.name));
      const token = next && 'pageToken' in next ? next.pageToken : undefined;
      if (!token) break;
      query = { ...query, pageToken: token };
    }
    assert.deepEqual(pageSizes, [400, 400, 255]);
    assert.deepEqual(seen, expected);

    mark = server.requests.length;
    const [capped, nextQuery, raw] = await bucket.getFiles({ autoPaginate: false, maxResults: 5000 });
    assert.equal(capped.length, 1000);
    assert.ok(nextQuery && 'pageToken' in nextQuery && nextQuery.pageToken);
    assert.ok(typeof (raw as { nextPageToken?: unknown }).nextPageToken === 'string');

    const [lastPage, noMore] = await bucket.getFiles({ autoPaginate: false, startOffset: 'snap/a' });
    assert.deepEqual(
      lastPage.map((f) => f.name),
      expected.slice(expected.indexOf('snap/a')),
    );
    assert.equal(noMore, null);

    // Partial responses with `fields`: the library then hands back the raw items.
    const [slim] = await bucket.getFiles({ autoPaginate: false, maxResults: 2, fields: 'items(name,size),nextPageToken' });
    assert.deepEqual(slim as unknown, [
      { name: 'snap/00000', size: String('snap/00000'.length) },
      { name: 'snap/00001', size: String('snap/00001'.length) },
    ]);
  });

  it('filters by prefix and groups by delimiter', async () => {
    const bucket = freshBucket();
    for (const n of ['backups/full/1', 'backups/full/2', 'backups/delta/1', 'backups/readme', 'backupsX', 'other/x']) {
      server.putObject(bucket.name, n, 'x');
    }
    const [full] = await bucket.getFiles({ prefix: 'backups/full/' });
    assert.deepEqual(
      full.map((f) => f.name),
      ['backups/full/1', 'backups/full/2'],
    );
    const [top, , raw] = await bucket.getFiles({ prefix: 'backups/', delimiter: '/', autoPaginate: false });
    assert.deepEqual(
      top.map((f) => f.name),
      ['backups/readme'],
    );
    assert.deepEqual((raw as { prefixes?: string[] }).prefixes, ['backups/delta/', 'backups/full/']);
    const [none] = await bucket.getFiles({ prefix: 'nothing/' });
    assert.deepEqual(none, []);
  });

  it('deletes objects; deleting or reading a deleted object is a 404', async () => {
    const bucket = freshBucket();
    await bucket.file('gone').save('bye', { resumable: false });
    assert.deepEqual(await bucket.file('gone').exists(), [true]);
    await bucket.file('gone').delete();
    assert.deepEqual(await bucket.file('gone').exists(), [false]);
    assert.deepEqual((await bucket.getFiles())[0], []);
    assert.equal((await rejection(bucket.file('gone').delete())).code, 404);
    assert.equal(server.objectBytes(bucket.name, 'gone'), undefined);
  });

  it('answers 404 for a missing object and a missing bucket', async () => {
    const bucket = freshBucket();
    const meta = await rejection(bucket.file('missing').getMetadata());
    assert.equal(meta.code, 404);
    assert.equal(meta.message, `No such object: ${bucket.name}/missing`);
    const dl = await rejection(bucket.file('missing').download());
    assert.equal(dl.code, 404);
    // For downloads the library replaces the message with the raw response body.
    assert.match(dl.message, /No such object/);

    const nob = storage.bucket('never-created');
    assert.equal((await rejection(nob.getFiles())).code, 404);
    assert.equal((await rejection(nob.file('x').getMetadata())).code, 404);
    // The multipart path rejects with an ApiError (`code`); the resumable path with a GaxiosError
    // (`status`, no `code`, message "Request failed with status code 404").
    assert.equal((await rejection(nob.file('x').save('data', { resumable: false }))).code, 404);
    const resumable = await rejection(nob.file('x').save('data', { resumable: true }));
    assert.equal(resumable.status, 404);
    assert.equal(resumable.code, undefined);
  });

  it('enforces ifGenerationMatch=0 on multipart and resumable uploads (412 when the object exists)', async () => {
    const bucket = freshBucket();
    const file = bucket.file('once');
    await file.save('first', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const [meta] = await file.getMetadata();

    const simple = await rejection(file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }));
    assert.equal(simple.code, 412);
    const resumable = await rejection(file.save('second', { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }));
    assert.equal(resumable.status, 412); // a GaxiosError, see the 404 test
    assert.equal((await file.download())[0].toString(), 'first');

    // Matching the live generation allows the overwrite and yields a new generation.
    await file.save('third', { resumable: true, preconditionOpts: { ifGenerationMatch: Number(meta.generation) } });
    const [after3] = await file.getMetadata();
    assert.notEqual(after3.generation, meta.generation);
    assert.equal((await file.download())[0].toString(), 'third');
  });

  it('verifies client-supplied hashes and serves gzip-encoded objects the way the library expects', async () => {
    const bucket = freshBucket();
    const data = randomBytes(5000);
    const bad = await rejection(bucket.file('h').save(data, { resumable: false, metadata: { md5Hash: md5(Buffer.from('other')) } }));
    assert.equal(bad.code, 400);
    assert.match(bad.message, /doesn't match calculated MD5/);
    assert.deepEqual(await bucket.file('h').exists(), [false]);
    await bucket.file('h').save(data, { resumable: false, metadata: { md5Hash: md5(data), crc32c: libCrc32c(data) } });
    assert.equal((await bucket.file('h').getMetadata())[0].md5Hash, md5(data));

    // gzip: the client compresses, the server stores as is and serves it with Content-Encoding.
    const text = Buffer.from('etcd '.repeat(20000));
    await bucket.file('z.txt').save(text, { resumable: false, gzip: true });
    const [meta] = await bucket.file('z.txt').getMetadata();
    assert.equal(meta.contentEncoding, 'gzip');
    assert.ok(Number(meta.size) < text.length);
    const [unzipped] = await bucket.file('z.txt').download({ validation: 'crc32c' });
    assert.ok(unzipped.equals(text));
  });

  it('updates custom metadata with setMetadata (merge, null deletes) and bumps metageneration', async () => {
    const bucket = freshBucket();
    const file = bucket.file('meta');
    await file.save('x', { resumable: false, metadata: { metadata: { keep: '1', drop: '2' } } });
    await file.setMetadata({ metadata: { drop: null, added: '3' } });
    const [meta] = await file.getMetadata();
    assert.deepEqual(meta.metadata, { keep: '1', added: '3' });
    assert.equal(meta.metageneration, '2');
  });

  it('failNext(1, 503) on idempotent reads is retried transparently by the library', async () => {
    const bucket = freshBucket();
    server.putObject(bucket.name, 'r', 'retry me');
    const fresh = new Storage({ apiEndpoint: server.url, projectId: 'test', retryOptions: { maxRetryDelay: 1 } }).bucket(bucket.name);

    let mark = server.requests.length;
    server.failNext(1, 503);
    const [meta] = await fresh.file('r').getMetadata();
    assert.equal(meta.name, 'r');
    assert.deepEqual(
      requestsSince(mark).map((r) => [r.status, r.injected]),
      [
        [503, true],
        [200, false],
      ],
    );

    mark = server.requests.length;
    server.failNext(1, 429, (r) => r.path.endsWith('/o/r'));
    const [body] = await fresh.file('r').download();
    assert.equal(body.toString(), 'retry me');
    assert.deepEqual(
      requestsSince(mark).map((r) => r.status),
      [429, 200],
    );

    mark = server.requests.length;
    server.failNext(1, 503, (r) => r.path.endsWith('/o'));
    const [files] = await fresh.getFiles();
    assert.deepEqual(
      files.map((f) => f.name),
      ['r'],
    );
    assert.deepEqual(
      requestsSince(mark).map((r) => r.status),
      [503, 200],
    );
  });

  it('failNext on uploads: retried only when the upload carries ifGenerationMatch (the library deems others non-idempotent)', async () => {
    const bucket = freshBucket();
    const fresh = (): Bucket => new Storage({ apiEndpoint: server.url, projectId: 'test', retryOptions: { maxRetryDelay: 1 } }).bucket(bucket.name);
    const data = randomBytes(600 * 1024);

    server.failNext(1, 503, (r) => r.method === 'PUT');
    const noPrecondition = await rejection(pipeline(sourceOf(data), fresh().file('a').createWriteStream({ resumable: true })));
    assert.match(noPrecondition.message, /Retry limit exceeded - status: 503/);
    assert.deepEqual(await fresh().file('a').exists(), [false]);

    // With a chunkSize the library keeps the whole chunk and can resend it. (Without one it keeps
    // only its last buffer, so a failure after more than that was sent ends in a RangeError.)
    const mark = server.requests.length;
    server.failNext(1, 503, (r) => r.method === 'PUT');
    await pipeline(sourceOf(data), fresh().file('b').createWriteStream({ resumable: true, chunkSize: 8 * MiB, preconditionOpts: { ifGenerationMatch: 0 } }));
    const puts = requestsSince(mark).filter((r) => r.method === 'PUT');
    // After a failed PUT the library asks for the persisted offset, then resends from there.
    assert.deepEqual(
      puts.map((r) => [r.headers.contentRange, r.status]),
      [
        [`bytes 0-${data.length - 1}/${data.length}`, 503],
        ['bytes */*', 308],
        [`bytes 0-${data.length - 1}/${data.length}`, 200],
      ],
    );
    const [b] = await fresh().file('b').download({ validation: 'crc32c' });
    assert.ok(b.equals(data));

    server.failNext(1, 503, (r) => r.method === 'DELETE');
    assert.equal((await rejection(fresh().file('b').delete())).code, 503);
    assert.deepEqual(await fresh().file('b').exists(), [true]);
  });

  it('corrupt() makes a validated download fail with the library checksum error', async () => {
    const bucket = freshBucket();
    const data = randomBytes(256 * 1024);
    await bucket.file('rot').save(data, { resumable: false });
    server.corrupt(bucket.name, 'rot');
    const stored = server.objectBytes(bucket.name, 'rot');
    assert.ok(stored && !stored.equals(data) && stored.length === data.length);

    const crcErr = await rejection(bucket.file('rot').download({ validation: 'crc32c' }));
    assert.equal(crcErr.code, 'CONTENT_DOWNLOAD_MISMATCH');
    const md5Err = await rejection(bucket.file('rot').download({ validation: 'md5' }));
    assert.equal(md5Err.code, 'CONTENT_DOWNLOAD_MISMATCH');
    // Without validation the rot goes unnoticed: the metadata still shows the original hashes.
    const [unchecked] = await bucket.file('rot').download({ validation: false });
    assert.ok(unchecked.equals(stored));
    assert.equal((await bucket.file('rot').getMetadata())[0].md5Hash, md5(data));
  });

  it('a source stream that errors halfway leaves no visible object (the library leaves the session open and its PUT stalled)', async () => {
    const bucket = freshBucket();
    const sessionsBefore = server.openUploadSessions();
    // `streams`: the data goes out in one request while the source is read (no chunk buffering).
    for (const [name, opts, streams] of [
      ['single-stream', { resumable: true }, true],
      ['chunked', { resumable: true, chunkSize: 256 * 1024 }, false],
      ['multipart', { resumable: false }, true],
    ] as const) {
      const mark = server.requests.length;
      let sessionUri: string | undefined;
      const ws = bucket.file(name).createWriteStream(opts);
      ws.on('uri', (u: string) => (sessionUri = u));
      const err = await rejection(pipeline(failingStream(700 * 1024), ws));
      assert.equal(err.message, 'source failed halfway', name);
      const dataRequests = (): FakeGcsRequestLogEntry[] =>
        requestsSince(mark).filter((r) => r.path.startsWith('/upload/') && !(r.method === 'POST' && /uploadType=resumable/.test(r.search)));
      await waitFor(`${name}: the data request`, () => dataRequests().length > 0);
      await sleep(100); // give a (wrongly) completing request the time to complete
      assert.deepEqual(await bucket.file(name).exists(), [false], name);
      assert.deepEqual((await bucket.getFiles())[0], [], name);
      assert.ok(dataRequests().every((r) => r.status !== 200), `${name}: no data request may succeed`);
      if (streams) {
        // The request carrying the stream is never finished: the library neither ends nor aborts it.
        assert.equal(dataRequests().at(-1)?.status, 0, `${name}: the streaming request is left hanging`);
      } else {
        // Chunks completed before the failure were accepted (308); the broken one was never sent.
        assert.ok(dataRequests().every((r) => r.status === 308), name);
      }
      if (opts.resumable) {
        // The library neither finishes nor cancels the session; the caller must DELETE it.
        assert.equal(server.openUploadSessions(), sessionsBefore + 1, name);
        assert.ok(sessionUri, name);
        const cancel = await fetch(sessionUri, { method: 'DELETE' });
        assert.equal(cancel.status, 499);
        assert.equal(server.openUploadSessions(), sessionsBefore, name);
      }
    }
  });

  it('an interrupted single-stream upload can be resumed with its session URI from the persisted offset', async () => {
    const bucket = freshBucket();
    const data = randomBytes(2 * MiB + 5);
    const [uri] = await bucket.file('resumed').createResumableUpload();
    let sent = 0;
    const broken = new Readable({
      read() {
        if (sent >= 700 * 1024) {
          this.destroy(new Error('boom'));
          return;
        }
        this.push(data.subarray(sent, sent + 64 * 1024));
        sent += 64 * 1024;
      },
    });
    const before = server.requests.length;
    assert.equal((await rejection(pipeline(broken, bucket.file('resumed').createWriteStream({ uri })))).message, 'boom');
    await waitFor('the stalled PUT', () => requestsSince(before).some((r) => r.headers.contentRange === 'bytes 0-*/*'));
    await sleep(200); // let its bytes arrive
    const mark = server.requests.length;
    await pipeline(sourceOf(data), bucket.file('resumed').createWriteStream({ uri }));
    const puts = requestsSince(mark).filter((r) => r.method === 'PUT');
    assert.deepEqual(
      puts.map((r) => r.status),
      [308, 200],
    );
    assert.equal(puts[0]?.headers.contentRange, 'bytes */*');
    // The stalled request was kept up to a 256 KiB boundary (512 KiB of the ~700 KiB it sent,
    // normally) and the library carries on from exactly there.
    const m = /^bytes (\d+)-\*\/\*$/.exec(puts[1]?.headers.contentRange ?? '');
    assert.ok(m, puts[1]?.headers.contentRange);
    const offset = Number(m[1]);
    assert.equal(offset % (256 * 1024), 0);
    assert.ok(offset > 0 && offset <= 700 * 1024, String(offset));
    const [downloaded] = await bucket.file('resumed').download({ validation: 'crc32c' });
    assert.ok(downloaded.equals(data));
  });

  it('library quirk: save({ resumable: false }) without a precondition switches retries off for the whole Storage instance', async () => {
    const bucket = freshBucket();
    const s = new Storage({ apiEndpoint: server.url, projectId: 'test', retryOptions: { maxRetryDelay: 1 } });
    assert.equal(s.retryOptions.autoRetry, true);
    await s.bucket(bucket.name).file('q').save('x', { resumable: false });
    assert.equal(s.retryOptions.autoRetry, false);
    server.failNext(1, 503);
    assert.equal((await rejection(s.bucket(bucket.name).file('q').getMetadata())).code, 503);
  });
});
