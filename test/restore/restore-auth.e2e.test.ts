import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { authEnabledIn } from '../../src/etcd/bolt-auth.js';
import { restoreMemberFlags, restoreResultOf, runCli } from '../helpers/cli.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { keyspaceAt, startRestored } from '../helpers/replay.js';
import { startTestSidecar } from '../helpers/sidecar.js';
import { backupStore, currentChain } from '../helpers/snapshots.js';

// anchor bug #950: a snapshot of a cluster with auth enabled starts the restore's temporary etcd
// with auth enabled, which refuses the replay's writes ("user name is empty"). The restore switches
// auth off in the temporary etcd's db and back on in what it leaves: the restored member has auth
// on, with the cluster's users, and the restore needed no credentials (the CLI here has none).

const PASSWORD = 'restore-auth-secret';

describe('restoring a cluster with auth enabled', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  let lastRevision = 0;
  const work = mkdtempSync(join(tmpdir(), 'ebs-restore-auth-'));
  const store = (): string => `file://${cluster.dir}/backups`;

  before(async () => {
    cluster = await TestCluster.start(1);
    await cluster.enableAuth(PASSWORD);
    client = new Etcd3({ hosts: cluster.endpoints, auth: { username: 'root', password: PASSWORD } });
    for (let i = 0; i < 30; i++) await client.put(`/auth/before/${i}`).value(`v${i}`);
    const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '200ms', 'etcd-username': 'root', 'etcd-password': PASSWORD });
    try {
      await eventually('full snapshot', async () => (await currentChain(backupStore(cluster))).full, 30_000);
      // After the full snapshot: puts, overwrites, a delete and a lease, which the replay must write.
      const lease = client.lease(600, { autoKeepAlive: false });
      await lease.put('/auth/leased').value('l');
      for (let i = 0; i < 30; i++) await client.put(`/auth/after/${i % 10}`).value(`w${i}`);
      await client.delete().key('/auth/before/3');
      lastRevision = Number((await client.maintenance.status()).header.revision);
      await eventually('deltas to the last write', async () => ((await currentChain(backupStore(cluster))).lastRevision === lastRevision ? true : undefined), 30_000);
    } finally {
      await sidecar.close();
    }
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** Restores the store into a new data dir; auth must be on there, with the source's keys at `revision`. */
  async function restoreAndCheck(name: string, revision: number): Promise<void> {
    const dir = join(work, name);
    const peer = `http://127.0.0.1:${await freePort()}`;
    const run = await runCli(['restore', ...restoreMemberFlags(join(dir, 'data'), peer, store())]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((restoreResultOf(run) as { revision: number }).revision, revision);
    assert.equal(await authEnabledIn(join(dir, 'data', 'member', 'snap', 'db')), true, "the restored member's db has auth on");
    const restored = await startRestored(dir, 'r1', peer);
    const root = new Etcd3({ hosts: [restored.clientURL], auth: { username: 'root', password: PASSWORD } });
    try {
      await assert.rejects(restored.client.get('/auth/before/0').string(), /user name is empty/, 'a client without credentials is refused: auth is on');
      assert.deepEqual(await keyspaceAt(root, revision), await keyspaceAt(client, revision), "root's password works and the keys are the source's");
    } finally {
      root.close();
      restored.client.close();
      await restored.etcd.stop();
    }
  }

  it('the CLI restore, without credentials, replays the deltas and leaves auth on with the same users and keys', async () => {
    const chain = await currentChain(backupStore(cluster));
    assert.ok(chain.links.length > 0, 'deltas to replay');
    assert.equal(await authEnabledIn(join(cluster.member('m1').dataDir, 'member', 'snap', 'db')), true, 'the source has auth on');
    await restoreAndCheck('plain', lastRevision);
  });

  it('compaction of such a chain gives a full snapshot with auth on, which restores alone', async () => {
    const run = await runCli(['compact', '--store', store(), '--log-level', 'warn']);
    assert.equal(run.code, 0, run.stderr);
    const chain = await currentChain(backupStore(cluster));
    assert.equal(chain.full?.lastRevision, lastRevision, 'the newest full snapshot is the compacted one');
    assert.equal(chain.links.length, 0);
    await restoreAndCheck('compacted', lastRevision);
  });
});
