import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { ReadyBody, StatusBody } from '../../src/server/schemas.js';
import { eventually, TestCluster } from '../helpers/cluster.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';

const QUOTA = 4 * 1024 * 1024;

/** Overwrites one key with large values until the cluster refuses writes for want of space. */
async function fillUntilNospace(client: Etcd3): Promise<number> {
  const value = randomBytes(256 * 1024);
  for (let i = 0; i < 200; i++) {
    try {
      await client.put('/fill').value(value);
    } catch (err) {
      if (/database space exceeded/.test((err as Error).message)) return i;
      throw err;
    }
  }
  throw new Error('the quota was never reached');
}

describe('NOSPACE', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  before(async () => {
    cluster = await TestCluster.start(3, { extraArgs: [`--quota-backend-bytes=${QUOTA}`] });
    client = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  it('a member out of space shows at once in /readyz and /status; with --auto-recover-nospace the backup leader compacts, defragments every member and disarms the alarm', async () => {
    const writes = await fillUntilNospace(client);
    assert.ok(writes > 4, `${writes} writes before the quota`);
    assert.match(await cluster.etcdctl(['alarm', 'list']), /alarm:NOSPACE/);

    const watcher = await startTestSidecar(cluster, 'm1', { 'health-check-period': '1s' });
    try {
      const ready = await getJson<ReadyBody>(`${watcher.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(ready.body.checks.find((c) => c.name === 'etcd-no-alarm')?.message ?? '', /NOSPACE \(writes are refused/);
      const status = (await getJson<StatusBody>(`${watcher.url}/status`)).body;
      assert.ok(
        status.cluster.alarms.some((a) => a.alarm === 'NOSPACE'),
        JSON.stringify(status.cluster.alarms),
      );
    } finally {
      await watcher.close();
    }

    const flags = {
      'auto-recover-nospace': 'true',
      'nospace-retained-revisions': '1',
      'health-check-period': '1s',
      'leader-check-period': '500ms',
      'defrag-schedule': 'off',
      'delta-snapshot-period': '1s',
    };
    const sidecars = [];
    for (const m of ['m1', 'm2', 'm3']) sidecars.push(await startTestSidecar(cluster, m, flags));
    try {
      await eventually('the alarm disarmed', async () => (/NOSPACE/.test(await cluster.etcdctl(['alarm', 'list'])) ? undefined : true), 90_000, 500);
      await client.put('/after-recovery').value('accepted');
      assert.equal(await client.get('/after-recovery').string(), 'accepted');
      const leader = sidecars.find((s) => s.lines.some((l) => l.includes('NOSPACE: recovered')));
      assert.ok(leader, 'one sidecar logged the recovery');
      for (const step of ['NOSPACE: recovering', 'NOSPACE: history compacted', 'NOSPACE: members defragmented', 'NOSPACE: alarm disarmed']) {
        assert.ok(
          leader.lines.some((l) => l.includes(step)),
          `logged: ${step}`,
        );
      }
      const recovery = (await getJson<StatusBody>(`${leader.url}/status`)).body.defrag?.nospaceRecovery;
      assert.equal(recovery?.cleared, true, JSON.stringify(recovery));
      for (const row of await cluster.endpointStatus()) assert.ok(row.Status.dbSize < QUOTA, `${row.Endpoint}: db ${row.Status.dbSize} still at the quota`);
    } finally {
      for (const s of sidecars) await s.close();
    }
  });
});
