import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StatusBody } from '../../src/server/schemas.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';

describe('GET /status on a healthy 3-member cluster', () => {
  let cluster: TestCluster;
  let sidecar: Awaited<ReturnType<typeof startTestSidecar>>;
  before(async () => {
    cluster = await TestCluster.start(3);
    sidecar = await startTestSidecar(cluster, 'm2');
  });
  after(async () => {
    await sidecar?.close();
    await cluster?.stop();
  });

  it('lists 3 healthy members with the right leader', async () => {
    const leader = await cluster.leader();
    const { status, body } = await getJson<StatusBody>(`${sidecar.url}/status`);
    assert.equal(status, 200);
    assert.equal(body.members.length, 3);
    assert.deepEqual(body.members.map((m) => m.name).sort(), ['m1', 'm2', 'm3']);
    for (const m of body.members) {
      assert.equal(m.healthy, true, `${m.name}: ${m.error}`);
      assert.equal(m.status?.reachable, true);
      assert.ok((m.status?.revision ?? 0) >= 1);
      assert.ok((m.status?.dbSize ?? 0) > 0);
      assert.equal(m.isLearner, false);
    }
    assert.equal(body.cluster.leader?.name, leader);
    assert.deepEqual(
      body.members.filter((m) => m.isLeader).map((m) => m.name),
      [leader],
    );
    assert.equal(body.cluster.hasQuorum, true);
    assert.equal(body.cluster.healthyVoters, 3);
    assert.match(body.cluster.id ?? '', /^[0-9a-f]+$/);
    assert.equal(body.member.name, 'm2');
    assert.equal(body.member.healthy, true);
    assert.equal(body.member.isLeader, leader === 'm2');
    assert.deepEqual([...body.endpoints].sort(), [...cluster.endpoints].sort());
  });

  it('agrees with etcdctl endpoint status on every member id and revision', async () => {
    await cluster.etcdctl(['put', 'k', 'v']);
    const rows = await cluster.endpointStatus();
    const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
    for (const row of rows) {
      const m = body.members.find((x) => x.clientURLs.includes(row.Endpoint));
      assert.ok(m, `member for ${row.Endpoint}`);
      assert.equal(m.id, BigInt(row.Status.header.member_id).toString(16));
      assert.ok((m.status?.revision ?? 0) >= row.Status.header.revision);
    }
  });

  it('serves readiness, liveness and per-member health metrics', async () => {
    assert.equal((await fetch(`${sidecar.url}/healthz`)).status, 200);
    const ready = await getJson<{ ready: boolean }>(`${sidecar.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(ready.body.ready, true);
    await sidecar.monitor.check();
    const text = await (await fetch(`${sidecar.url}/metrics`)).text();
    for (const name of ['m1', 'm2', 'm3']) {
      assert.match(text, new RegExp(`etcd_backup_sidecar_member_healthy\\{member="${name}",member_id="[0-9a-f]+"\\} 1`));
    }
    assert.match(text, /etcd_backup_sidecar_cluster_has_quorum 1/);
    assert.match(text, /etcd_backup_sidecar_process_resident_memory_bytes/);
  });

  it('shows the backup store as healthy', async () => {
    const body = await eventually(
      'store probed',
      async () => {
        const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
        return body.store ? body : undefined;
      },
      10_000,
    );
    assert.equal(body.store?.healthy, true, body.store?.error);
    assert.match(body.store?.url ?? '', /^file:\/\/.*backups$/);
  });

  it('an unreachable store shows as unhealthy with its cause and never slows /status', async () => {
    const creds = join(cluster.dir, 'aws-credentials');
    writeFileSync(creds, '[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = do-not-print-me\n');
    const other = await startTestSidecar(cluster, 'm3', {
      store: 's3://backups/etcd',
      's3-endpoint': `http://127.0.0.1:${await freePort()}`,
      's3-credentials-file': creds,
      'store-max-attempts': '1',
    });
    try {
      const body = await eventually(
        'store probed',
        async () => {
          const { body, ms } = await getJson<StatusBody>(`${other.url}/status`);
          assert.ok(ms < 5_000, `/status took ${Math.round(ms)} ms`);
          return body.store ? body : undefined;
        },
        10_000,
      );
      assert.equal(body.store?.healthy, false);
      assert.match(body.store?.error ?? '', /ECONNREFUSED/);
      assert.ok(!JSON.stringify(body).includes('do-not-print-me'));
      assert.ok(!other.lines.join('\n').includes('do-not-print-me'), 'the secret key reached the log');
    } finally {
      await other.close();
    }
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await getJson<{ error: string; message: string }>(`${sidecar.url}/nope`);
    assert.equal(res.status, 404);
    assert.equal(res.body.error, 'not_found');
  });
});
