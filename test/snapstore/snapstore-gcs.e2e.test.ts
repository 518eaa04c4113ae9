/**
 * What only the GCS store does, on fake-gcs-server behind the fault-injecting proxy: chunked
 * resumable uploads (--gcs-chunk-size), whose chunks the contract suite's default (one streaming
 * request) never sends. Before fake-gcs-server these paths were proven only against a hand-written
 * server, with the library alone.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { SnapStore } from '../../src/snapstore/index.js';
import { FAKE_GCS, gcsFixture, withPeer } from '../helpers/peer-stores.js';
import { failingStream, randomStream, sha256Of, type StoreFixture } from '../helpers/store-fixtures.js';

const MiB = 1 << 20;
/** A chunk of a resumable upload: a PUT to the session URL. */
const chunkPut = (req: IncomingMessage): boolean => req.method === 'PUT' && (req.url ?? '').includes('upload_id=');

withPeer(FAKE_GCS, 'gcs chunked uploads: gcs (fake-gcs-server)', () => {
  describe('gcs chunked uploads: gcs (fake-gcs-server)', () => {
    let fx: StoreFixture;
    let store: SnapStore;
    before(async () => {
      fx = await gcsFixture();
      store = await fx.open({ 'gcs-chunk-size': '8MiB' });
    });
    after(async () => {
      await store.close();
      await fx.stop();
    });

    it('20 MiB in 8 MiB chunks round-trips, and reads back with the md5 GCS computed', async () => {
      const src = randomStream(20 * MiB);
      const put = await store.put('v2/Full-chunked', src.stream);
      assert.equal(put.size, 20 * MiB);
      assert.equal(put.verifiedBy, 'md5');
      assert.deepEqual(await sha256Of(await store.get('v2/Full-chunked')), { sha256: src.sha256(), size: 20 * MiB });
    });

    it('a chunk answered with 503, and one whose connection is reset, are sent again', async () => {
      fx.injectTransient?.(1, { status: 503 }, chunkPut);
      fx.injectTransient?.(1, 'reset', chunkPut);
      const src = randomStream(20 * MiB);
      const put = await store.put('v2/Full-chunk-retried', src.stream);
      assert.equal(fx.faultsLeft?.(), 0, 'both faults met a chunk');
      assert.equal(put.sha256, src.sha256());
      assert.deepEqual(await sha256Of(await store.get('v2/Full-chunk-retried')), { sha256: put.sha256, size: 20 * MiB });
    });

    it('a source that fails after two chunks leaves no object', async () => {
      await assert.rejects(store.put('v2/Full-chunked-broken', failingStream(19 * MiB)));
      assert.equal(await store.head('v2/Full-chunked-broken'), undefined);
      assert.deepEqual((await store.list('v2/Full-chunked-broken')).objects, []);
    });
  });
});
