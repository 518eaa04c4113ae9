import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StatusBody } from '../../src/server/schemas.js';
import { TestCluster } from '../helpers/cluster.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';

describe('etcd with TLS and client-certificate auth', () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start(3, { tls: true });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('the sidecar reaches every member with its client certificate', async () => {
    const pki = cluster.pki;
    assert.ok(pki);
    const sidecar = await startTestSidecar(cluster, 'm1', { 'etcd-cacert': pki.ca, 'etcd-cert': pki.clientCert, 'etcd-key': pki.clientKey });
    try {
      await sidecar.etcd.etcd.put('tls').value('yes');
      assert.equal(await sidecar.etcd.etcd.get('tls').string(), 'yes');
      const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
      assert.equal(body.members.length, 3);
      for (const m of body.members) assert.equal(m.healthy, true, `${m.name}: ${m.error}`);
      assert.ok(body.endpoints.every((u) => u.startsWith('https://')));
    } finally {
      await sidecar.close();
    }
  });

  it('without a client certificate every member is reported unreachable, with the cause', async () => {
    const pki = cluster.pki;
    assert.ok(pki);
    const sidecar = await startTestSidecar(cluster, 'm1', { 'etcd-cacert': pki.ca });
    try {
      const { status, body } = await getJson<StatusBody>(`${sidecar.url}/status`);
      assert.equal(status, 200);
      assert.equal(body.cluster.hasQuorum, false);
      for (const m of body.members) {
        assert.equal(m.healthy, false);
        assert.ok((m.error ?? '').length > 0);
      }
    } finally {
      await sidecar.close();
    }
  });
});
