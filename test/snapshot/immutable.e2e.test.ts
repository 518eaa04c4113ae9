import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectRetentionCommand, HeadObjectCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import type { StatusBody } from '../../src/server/schemas.js';
import { restorableChain } from '../../src/snapshot/chain.js';
import { snapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { ObjectLockedError, type SnapStore } from '../../src/snapstore/index.js';
import { eventually, TestCluster } from '../helpers/cluster.js';
import { AZURITE, azuriteFixture, FAKE_GCS, gcsFixture, MINIO, minioClient, minioFixture, withPeer } from '../helpers/peer-stores.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';
import { localFixture, randomStream, type StoreFixture } from '../helpers/store-fixtures.js';

/** Where the MinIO fixture keeps an object (its store URL's bucket and prefix). */
const S3_BUCKET = 'ebs-contract';
const s3Key = (name: string): string => `backups/main/${name}`;

const RETENTION_S = 10;

/** How a test looks at a stored object's lock behind the sidecar's back, as an operator would. */
interface LockInspector {
  retainUntil(name: string): Promise<Date | undefined>;
  /** Deletes the object the way that the store must refuse while it is locked; resolves to the refusal's message. */
  refusedDelete(name: string): Promise<string>;
}

async function expectLocked(store: SnapStore, name: string): Promise<ObjectLockedError> {
  const err = await store.delete(name).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof ObjectLockedError, `delete ${name} should be refused as locked, got ${String(err)}`);
  return err;
}

/**
 * The whole path on one store: a sidecar with --store-retention uploads locked snapshots; after a
 * second full snapshot retention wants the first one (and its deltas) gone, holds them while
 * locked without logging errors, shows them in /status, and deletes them once the lock ended.
 */
async function lockedRetention(fx: StoreFixture, inspect: LockInspector): Promise<void> {
  const cluster = await TestCluster.start(1);
  const store = await fx.open();
  const sidecar = await startTestSidecar(cluster, 'm1', {
    ...fx.flags,
    'snapshot-leader': 'always',
    'store-retention': `${RETENTION_S}s`,
    'gc-period': '1s',
    'gc-policy': 'limit',
    'max-backups': '1',
    'delta-snapshot-period': '1s',
  });
  try {
    const first = await eventually('the start-up full snapshot', async () => (await listSnapshots(store)).find((s) => s.kind === 'full'), 30_000);
    await cluster.etcdctl(['put', '/locked/a', '1']);
    const delta = await eventually('a delta after it', async () => (await listSnapshots(store)).find((s) => s.kind === 'delta' && s.lastRevision > first.lastRevision), 20_000);
    const res = await fetch(`${sidecar.url}/snapshot/full`, { method: 'POST' });
    const text = await res.text();
    assert.equal(res.status, 201, text);
    const second = JSON.parse(text) as { name: string; lastRevision: number };

    for (const s of [first, delta]) {
      const until = await inspect.retainUntil(s.name);
      assert.ok(until, `${s.name} carries no retention`);
      const lockedFor = until.getTime() - s.createdAt.getTime();
      assert.ok(lockedFor >= RETENTION_S * 1000 && lockedFor < (RETENTION_S + 2) * 1000, `${s.name} locked ${lockedFor} ms after its creation`);
    }
    assert.match(await inspect.refusedDelete(first.name), /WORM|retain|lock/i);

    const held = await eventually(
      '/status to list the first full snapshot as held by its lock',
      async () => {
        const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
        const gc = body.backup.gc;
        return gc?.lockedUntil.some((l) => l.name === first.name && l.retainUntil) ? gc : undefined;
      },
      10_000,
    );
    assert.ok(held.next, 'the next deletion is named');
    assert.ok(Date.parse(held.next.at) > Date.now() - 5_000);
    const during = await listSnapshots(store);
    assert.ok(
      during.some((s) => s.name === first.name),
      'the locked full snapshot is still there',
    );
    const chain = restorableChain(during);
    assert.equal(chain.full?.name, second.name, 'restores start from the newest full snapshot');
    assert.equal(chain.contiguous, true);

    const heldDeltas = during.filter((s) => s.kind === 'delta' && s.lastRevision <= second.lastRevision);
    await eventually(
      'retention to delete the first full snapshot and its deltas once their lock ended',
      async () => {
        const names = new Set((await listSnapshots(store)).map((s) => s.name));
        return [first, ...heldDeltas].every((s: SnapshotRef) => !names.has(s.name)) ? true : undefined;
      },
      (RETENTION_S + 15) * 1000,
      500,
    );
    const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
    assert.deepEqual(
      body.backup.gc?.lockedUntil.filter((l) => l.name === first.name),
      [],
    );
    assert.ok((await listSnapshots(store)).some((s) => s.name === second.name));
    assert.equal(sidecar.lines.filter((l) => l.includes('retention failed')).length, 0, 'a held snapshot is not a failure');
    const errors = sidecar.lines.filter((l) => l.includes('"level":"error"') || l.includes('"level":50'));
    assert.deepEqual(errors, []);
    const summaries = sidecar.lines.filter((l) => l.includes('locked snapshots wait for their lock to end')).length;
    assert.ok(summaries >= 1 && summaries <= 2 * (RETENTION_S + 10), `one summary line per run at most, got ${summaries}`);
  } finally {
    await sidecar.close();
    await store.close();
    await cluster.stop();
  }
}

describe('immutable buckets: the local store', () => {
  let fx: StoreFixture;
  before(async () => {
    fx = await localFixture();
  });
  after(async () => {
    await fx?.stop();
  });

  it('records retain-until, refuses deletes and overwrites before it, allows them after', async () => {
    const store = await fx.open({ 'store-retention': '1s' });
    const until = new Date(Date.now() + 1500);
    const put = await store.put('v2/Full-00000000-00000001-1.gz', randomStream(4096).stream, { retainUntil: until });
    assert.equal(put.retainUntil?.toISOString(), until.toISOString());
    assert.equal((await store.head(put.name))?.retainUntil?.toISOString(), until.toISOString());
    const refused = await expectLocked(store, put.name);
    assert.equal(refused.retainUntil?.toISOString(), until.toISOString());
    await assert.rejects(store.put(put.name, randomStream(10).stream), (e: Error) => e instanceof ObjectLockedError && /overwrite/.test(e.message));
    await sleep(until.getTime() - Date.now() + 50);
    await store.delete(put.name);
    assert.equal(await store.head(put.name), undefined);
    await store.close();
  });

  it('a sidecar locks its snapshots and retention deletes them only once their lock ended', async () => {
    const store = await fx.open();
    try {
      await lockedRetention(fx, {
        retainUntil: async (name) => (await store.head(name))?.retainUntil,
        refusedDelete: async (name) => (await expectLocked(store, name)).message,
      });
    } finally {
      await store.close();
    }
  });
});

withPeer(MINIO, 'immutable buckets: s3 (MinIO)', () => {
  describe('immutable buckets: s3 (MinIO, bucket with Object Lock)', () => {
    let fx: StoreFixture;
    before(async () => {
      fx = await minioFixture({ objectLock: true });
    });
    after(async () => {
      await fx?.stop();
    });

    it('refuses --store-retention at start-up on a bucket without Object Lock', async () => {
      const s3 = minioClient(fx);
      try {
        await s3.send(new CreateBucketCommand({ Bucket: 'no-lock' }));
      } finally {
        s3.destroy();
      }
      await assert.rejects(fx.open({ store: 's3://no-lock/x', 'store-retention': '24h' }), /bucket no-lock has no Object Lock: --store-retention needs a bucket created with Object Lock/);
    });

    it('a multipart upload carries the retention (with the checksum S3 demands); MinIO refuses to delete the version before the date; after it the version is gone', async () => {
      const store = await fx.open({ 'store-retention': '3s' });
      const s3 = minioClient(fx);
      try {
        const until = new Date(Date.now() + 3000);
        const name = 'v2/Full-00000000-00000002-2.gz';
        await store.put(name, randomStream(11 << 20).stream, { retainUntil: until });
        const retention = await s3.send(new GetObjectRetentionCommand({ Bucket: S3_BUCKET, Key: s3Key(name) }));
        assert.equal(retention.Retention?.Mode, 'GOVERNANCE', 'the default mode of a bucket without a default retention');
        assert.equal(retention.Retention?.RetainUntilDate?.toISOString(), until.toISOString());
        assert.equal((await store.head(name))?.retainUntil?.toISOString(), until.toISOString());
        const refused = await expectLocked(store, name);
        assert.equal(refused.retainUntil?.toISOString(), until.toISOString());
        await sleep(until.getTime() - Date.now() + 100);
        await store.delete(name);
        const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: S3_BUCKET, Prefix: s3Key(name) }));
        assert.deepEqual([...(versions.Versions ?? []), ...(versions.DeleteMarkers ?? [])], [], 'deleted for good, not hidden behind a delete marker');
      } finally {
        s3.destroy();
        await store.close();
      }
    });

    it('a sidecar locks its snapshots and retention deletes them only once their lock ended', async () => {
      const s3 = minioClient(fx);
      try {
        await lockedRetention(fx, {
          retainUntil: async (name) => (await s3.send(new GetObjectRetentionCommand({ Bucket: S3_BUCKET, Key: s3Key(name) }))).Retention?.RetainUntilDate,
          refusedDelete: async (name) => {
            const head = await s3.send(new HeadObjectCommand({ Bucket: S3_BUCKET, Key: s3Key(name) }));
            const err = await s3.send(new DeleteObjectCommand({ Bucket: S3_BUCKET, Key: s3Key(name), VersionId: head.VersionId })).then(
              () => undefined,
              (e: Error) => e,
            );
            assert.ok(err, 'MinIO deleted a locked version');
            return err.message;
          },
        });
      } finally {
        s3.destroy();
      }
    });
  });
});

withPeer(FAKE_GCS, 'immutable buckets: gcs (fake-gcs-server)', () => {
  describe('immutable buckets: gcs (fake-gcs-server)', () => {
    let fx: StoreFixture;
    before(async () => {
      fx = await gcsFixture();
    });
    after(async () => {
      await fx?.stop();
    });

    it('refuses --store-retention at start-up on a bucket without per-object retention', async () => {
      await assert.rejects(fx.open({ 'store-retention': '24h' }), /bucket ebs-contract has no object retention: --store-retention needs a bucket created with per-object retention enabled/);
    });

    it('an upload given a retain-until date carries it (mode and date), and head and the listing report it', async () => {
      const store = await fx.open({ 'gcs-retention-mode': 'Locked' });
      try {
        const name = snapshotName({ kind: 'full', startRevision: 0, lastRevision: 7, createdAt: new Date(), compression: 'none' });
        const until = new Date(Math.floor(Date.now() / 1000) * 1000 + 3600_000);
        await store.put(name, Readable.from([Buffer.from('locked bytes')]), { retainUntil: until });
        assert.equal((await store.head(name))?.retainUntil?.toISOString(), until.toISOString());
        const listed = (await store.list('v2/')).objects.find((o) => o.name === name);
        assert.equal(listed?.retainUntil?.toISOString(), until.toISOString(), 'retention reads the date from the listing, no request per object');
        const resource = (await (await fetch(`${fx.flags['gcs-endpoint']}/storage/v1/b/ebs-contract/o/${encodeURIComponent(`backups/main/${name}`)}`)).json()) as { retention?: { mode?: string } };
        assert.equal(resource.retention?.mode, 'Locked', 'the mode of --gcs-retention-mode');
      } finally {
        await store.close();
      }
    });

    it(
      'GCS refuses to delete an object before its retain-until date',
      { skip: 'fake-gcs-server records and reports per-object retention but does not enforce it on delete; the refusal path (403, held by retention) is proven on MinIO and the local store' },
      () => {},
    );
  });
});

withPeer(AZURITE, 'immutable buckets: azure (Azurite)', () => {
  describe('immutable buckets: azure (Azurite)', () => {
    let fx: StoreFixture;
    before(async () => {
      fx = await azuriteFixture();
    });
    after(async () => {
      await fx?.stop();
    });

    it('refuses --store-retention at start-up on a container without version-level immutability', async () => {
      await assert.rejects(fx.open({ 'store-retention': '24h' }), /container ebs-contract has no version-level immutability: --store-retention needs a container created with it/);
    });

    it(
      'locks uploads with a version-level immutability policy; Azure refuses their delete before the date',
      {
        skip: 'Azurite answers every immutability call with 501 Not Implemented and has no version-level immutability on its containers, so the lock itself could not be tested here; the refusal (409 BlobImmutableDueToPolicy) is mapped to a lock, which retention holds, as on MinIO and the local store',
      },
      () => {},
    );
  });
});
