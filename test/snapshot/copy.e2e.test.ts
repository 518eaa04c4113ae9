import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { restoreMemberFlags, restoreResultOf, runCli } from '../helpers/cli.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { keyspaceAt, startRestored } from '../helpers/replay.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';
import { currentChain, backupStore } from '../helpers/snapshots.js';
import { AZURITE, azuriteFixture } from '../helpers/peer-stores.js';
import { s3Fixture, type StoreFixture } from '../helpers/store-fixtures.js';
import { MINIO, minioFixture } from '../helpers/peer-stores.js';
import type { StatusBody } from '../../src/server/schemas.js';

const cli = runCli;

/** The flags of a store given on the command line (everything but the URL, which --from/--to carry). */
const storeFlags = (flags: Record<string, string>): string[] =>
  Object.entries(flags)
    .filter(([k]) => k !== 'store')
    .flatMap(([k, v]) => [`--${k}`, v]);

describe('copy between stores', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  let s3: StoreFixture;
  let azure: StoreFixture | undefined;
  const work = mkdtempSync(join(tmpdir(), 'ebs-copy-'));
  let lastRevision = 0;
  before(async () => {
    cluster = await TestCluster.start(1);
    client = new Etcd3({ hosts: cluster.endpoints });
    s3 = await s3Fixture();
    if ('path' in AZURITE) azure = await azuriteFixture();
    // A chain: a full snapshot, then deltas of puts, overwrites and deletes.
    for (let i = 0; i < 50; i++) await client.put(`/before/${i}`).value(`v${i}`);
    const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '200ms' });
    try {
      await eventually('full snapshot', async () => (await currentChain(backupStore(cluster))).full, 20_000);
      for (let i = 0; i < 50; i++) await client.put(`/after/${i % 20}`).value(`w${i}`);
      await client.delete().key('/before/3');
      lastRevision = Number((await client.maintenance.status()).header.revision);
      await eventually('deltas to the last write', async () => ((await currentChain(backupStore(cluster))).lastRevision === lastRevision ? true : undefined), 20_000);
    } finally {
      await sidecar.close();
    }
  });
  after(async () => {
    client?.close();
    await s3?.stop();
    await azure?.stop();
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  async function restoreFrom(store: string, extra: string[], name: string): Promise<void> {
    const dir = join(work, name);
    const peer = `http://127.0.0.1:${await freePort()}`;
    const r = await cli(['restore', ...restoreMemberFlags(join(dir, 'data'), peer, store), ...extra]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((restoreResultOf(r) as { revision: number }).revision, lastRevision);
    const restored = await startRestored(dir, 'r1', peer);
    try {
      assert.deepEqual(await keyspaceAt(restored.client, lastRevision), await keyspaceAt(client, lastRevision));
    } finally {
      restored.client.close();
      await restored.etcd.stop();
    }
  }

  it('copies every snapshot to a local folder and to S3, checked on both sides; a second run copies nothing; each copy restores key for key', async () => {
    const source = `file://${cluster.dir}/backups`;
    const chain = await currentChain(backupStore(cluster));
    const objects = 1 + chain.links.length;
    const local = `file://${join(work, 'copy')}`;
    const first = await cli(['copy', '--from', source, '--to', local, '--log-level', 'warn']);
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout) as { copied: number; skipped: number; copiedObjects: { verifiedBy: string }[] };
    assert.ok(report.copied >= objects, `${report.copied} copied, the chain has ${objects}`);
    assert.equal(report.skipped, 0);
    const again = JSON.parse((await cli(['copy', '--from', source, '--to', local, '--log-level', 'warn'])).stdout) as { copied: number; skipped: number };
    assert.deepEqual([again.copied, again.skipped], [0, report.copied], 'a second run resumes: nothing left to copy');

    const s3Store = s3.flags['store'] as string;
    const toS3 = await cli(['copy', '--from', source, '--to', s3Store, ...storeFlags(s3.flags), '--log-level', 'warn']);
    assert.equal(toS3.code, 0, toS3.stderr);
    assert.equal((JSON.parse(toS3.stdout) as { copied: number }).copied, report.copied);

    await restoreFrom(local, [], 'from-local');
    await restoreFrom(s3Store, storeFlags(s3.flags), 'from-s3');
  });

  it('copies every snapshot to Azure Blob (Azurite), block by block; a second run copies nothing; the copy restores key for key', { skip: 'skip' in AZURITE && AZURITE.skip }, async () => {
    const fx = azure as StoreFixture;
    const source = `file://${cluster.dir}/backups`;
    const chain = await currentChain(backupStore(cluster));
    const to = fx.flags['store'] as string;
    const first = await cli(['copy', '--from', source, '--to', to, ...storeFlags(fx.flags), '--log-level', 'warn']);
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout) as { copied: number; skipped: number; copiedObjects: { verifiedBy: string }[] };
    assert.ok(report.copied >= 1 + chain.links.length, `${report.copied} copied, the chain has ${1 + chain.links.length}`);
    assert.deepEqual(new Set(report.copiedObjects.map((o) => o.verifiedBy)), new Set(['block-md5']));
    const again = JSON.parse((await cli(['copy', '--from', source, '--to', to, ...storeFlags(fx.flags), '--log-level', 'warn'])).stdout) as { copied: number; skipped: number };
    assert.deepEqual([again.copied, again.skipped], [0, report.copied]);
    await restoreFrom(to, storeFlags(fx.flags), 'from-azure');
  });

  it('--chains 1 copies only the latest chain; a bad --since is refused naming it', async () => {
    const bad = await cli(['copy', '--from', `file://${cluster.dir}/backups`, '--to', `file://${join(work, 'bad')}`, '--since', 'yesterday']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--since yesterday is not an RFC 3339 time/);
    const one = await cli(['copy', '--from', `file://${cluster.dir}/backups`, '--to', `file://${join(work, 'one')}`, '--chains', '1', '--log-level', 'warn']);
    assert.equal(one.code, 0, one.stderr);
    const chain = await currentChain(backupStore(cluster));
    assert.equal((JSON.parse(one.stdout) as { copied: number }).copied, 1 + chain.links.length);
  });

  it(
    '--secondary-store: the backup leader keeps MinIO in step after each upload; frozen, it delays no backup and catches up when back; a restore from it reaches the last write',
    { skip: 'skip' in MINIO ? MINIO.skip : false },
    async () => {
      const minio = await minioFixture();
      const primary = backupStore(cluster);
      const secondary = await minio.open();
      const sidecar = await startTestSidecar(cluster, 'm1', {
        'snapshot-leader': 'always',
        'delta-snapshot-period': '200ms',
        ...minio.flags,
        store: `file://${cluster.dir}/backups`,
        'secondary-store': minio.flags['store'] as string,
        'secondary-store-period': '500ms',
        'store-timeout': '2s',
        'store-max-attempts': '1',
      });
      const status = async (): Promise<NonNullable<StatusBody['secondaryStore']>> => {
        const s = (await getJson<StatusBody>(`${sidecar.url}/status`)).body.secondaryStore;
        assert.ok(s, '/status shows the secondary store');
        return s;
      };
      const inStep = async (revision: number): Promise<true | undefined> => ((await currentChain(secondary)).lastRevision === revision ? true : undefined);
      try {
        for (let i = 0; i < 20; i++) await client.put(`/secondary/${i}`).value(`a${i}`);
        let last = Number((await client.maintenance.status()).header.revision);
        await eventually('MinIO in step', () => inStep(last), 30_000);

        minio.freeze?.();
        for (let i = 0; i < 20; i++) await client.put(`/secondary/${i}`).value(`b${i}`);
        last = Number((await client.maintenance.status()).header.revision);
        await eventually('the primary store keeps receiving deltas', async () => ((await currentChain(primary)).lastRevision === last ? true : undefined), 20_000);
        const failing = await eventually('/status says the sync fails', async () => ((await status()).failuresInARow > 0 ? status() : undefined), 20_000);
        assert.ok(failing.lastError?.message, 'the failure is named');

        minio.thaw?.();
        await eventually('MinIO caught up', () => inStep(last), 30_000);
        await eventually('/status in step again', async () => ((await status()).failuresInARow === 0 ? true : undefined), 20_000);
        lastRevision = last;
      } finally {
        minio.thaw?.();
        await sidecar.close();
        await secondary.close();
      }
      try {
        await restoreFrom(minio.flags['store'] as string, storeFlags(minio.flags), 'from-secondary');
      } finally {
        await minio.stop();
      }
    },
  );
});
