import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from '../../src/etcd/client.js';
import type { StatusBody } from '../../src/server/schemas.js';
import { eventually, TestCluster, type TestMember } from '../helpers/cluster.js';
import { capturingLogger, getJson, startTestSidecar } from '../helpers/sidecar.js';

// Seed 002: clientv3's auto-sync once put a learner into the endpoint rotation, and every request
// sent there failed. Here the operator even lists the learner's URL in --endpoints: the client must
// still never send it a request.

/** How many KV Range calls a member has served, read from etcd's own Prometheus metrics. */
async function rangeCalls(m: TestMember): Promise<number> {
  const text = await (await fetch(`${m.clientURL}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('grpc_server_started_total{') && l.includes('grpc_method="Range"'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('learners and unstarted members stay out of the endpoint rotation', () => {
  let cluster: TestCluster;
  let client: EtcdClient;
  let learner: TestMember;

  before(async () => {
    cluster = await TestCluster.start(3);
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  it('an added, unstarted learner is left out', async () => {
    learner = await cluster.addLearner('m4', { start: false });
    const { config } = loadConfig({
      flags: {
        name: 'm1',
        'data-dir': '/tmp/unused',
        'initial-cluster': cluster.members.map((m) => `${m.name}=${m.peerURL}`).join(','),
        'advertise-client-urls': cluster.members[0]?.clientURL,
        endpoints: cluster.endpoints.join(','), // includes m4's URL
        'auto-sync-interval': '1s',
      },
      env: {},
      requireMember: true,
    });
    client = await createEtcdClient(etcdAccessFromConfig(config), capturingLogger().log);
    assert.deepEqual(
      client.endpoints(),
      cluster.members
        .slice(0, 3)
        .map((m) => m.clientURL)
        .sort(),
    );
  });

  it('a started learner is left out and receives no request', async () => {
    learner.process.start();
    await eventually('learner serving', async () => ((await fetch(`${learner.clientURL}/metrics`)).ok ? true : undefined), 20_000);
    await client.syncEndpoints();
    assert.ok(!client.endpoints().includes(learner.clientURL), `rotation ${client.endpoints().join(',')}`);

    const before = await rangeCalls(learner);
    for (let i = 0; i < 60; i++) await client.etcd.get(`k${i}`).string();
    assert.equal(await rangeCalls(learner), before, 'the learner served Range calls');
    const served = await Promise.all(cluster.members.slice(0, 3).map(rangeCalls));
    assert.ok(served.reduce((a, b) => a + b, 0) >= 60, `voters served ${served.join('+')} Range calls`);
  });

  it('/status lists the learner as such and the rotation without it', async () => {
    const sidecar = await startTestSidecar(cluster, 'm1', { endpoints: cluster.endpoints.join(',') });
    try {
      const { body } = await getJson<StatusBody>(`${sidecar.url}/status`);
      const m4 = body.members.find((m) => m.name === 'm4');
      assert.equal(m4?.isLearner, true);
      assert.equal(body.cluster.voters, 3);
      assert.ok(!body.endpoints.includes(learner.clientURL));
    } finally {
      await sidecar.close();
    }
  });

  it('once promoted, the member joins the rotation at the next sync', async () => {
    const id = await eventually(
      'learner id',
      async () => {
        const out = await cluster.etcdctl(['member', 'list', '-w', 'json']);
        const m = /"ID":(\d+),"name":"m4"/.exec(out);
        return m ? BigInt(m[1] as string).toString(16) : undefined;
      },
      5_000,
    );
    await eventually('promote', async () => ((await cluster.etcdctl(['member', 'promote', id])).includes('promoted') ? true : undefined), 20_000, 500);
    await eventually('m4 in rotation', async () => (client.endpoints().includes(learner.clientURL) ? true : undefined), 10_000);
    assert.equal(client.endpoints().length, 4);
  });
});
