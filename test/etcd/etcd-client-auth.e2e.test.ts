import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcdClient, type EtcdClient } from '../../src/etcd/client.js';
import { createLogger } from '../../src/logger.js';
import { sleep, TestCluster } from '../helpers/cluster.js';

// A member restart with auth on invalidates every token. etcd3 1.1.2 retries a call that met
// "invalid auth token" from inside its host fault policy; with cockatiel's circuit breaker half-open
// at that moment the retry waits on the very call it belongs to, and the call never settles. Seen
// here: a plain etcd3 client in the auth snapshot test stayed pending for 30 s after etcd's restart
// (the CI failure); the timing is not reproducible on demand, so this test holds the product's
// client to the outcome instead: the first calls after a restart answer, none hangs.

const PASSWORD = 'pw-for-client';
const outcome = (p: Promise<unknown>, ms: number): Promise<string> =>
  Promise.race([
    p.then(
      () => 'ok',
      (e: Error) => `error: ${e.message}`,
    ),
    sleep(ms).then(() => 'pending'),
  ]);

/**
 * Kills the member, brings it back at once (every token gone) and calls it every 200 ms, each
 * attempt bounded, as the auth snapshot test did: "ok" once a call succeeds, "stuck" when one attempt
 * is still pending after 15 s (its own deadline is 2 s, so it waits on a promise, not on etcd).
 */
async function restartAndCall(cluster: TestCluster, call: () => Promise<unknown>): Promise<string> {
  await cluster.kill('m1');
  cluster.restart('m1');
  const deadline = Date.now() + 40_000;
  while (Date.now() < deadline) {
    const r = await outcome(call(), 15_000);
    if (r !== 'ok' && r !== 'pending') {
      await sleep(200);
      continue;
    }
    return r === 'ok' ? 'ok' : 'stuck';
  }
  return 'no success within 40 s';
}

describe('etcd client with auth across a member restart', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start(1);
    await cluster.enableAuth(PASSWORD);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('the sidecar client answers the first call after the restart, and every one after it', async () => {
    let etcd: EtcdClient | undefined;
    try {
      etcd = await createEtcdClient(
        {
          endpoints: cluster.endpoints,
          callTimeoutMs: 2_000,
          keepAliveTimeMs: 10_000,
          keepAliveTimeoutMs: 5_000,
          permitWithoutStream: false,
          autoSyncIntervalMs: 0,
          auth: { username: 'root', password: PASSWORD },
        },
        createLogger('silent'),
      );
      const client = etcd.etcd;
      await client.put('/before').value('v');
      assert.equal(await restartAndCall(cluster, () => client.put('/after').value('v').exec()), 'ok');
      for (let i = 0; i < 10; i++) await client.put(`/after/${i}`).value('v');
      assert.equal(await client.get('/after/9').string(), 'v');
    } finally {
      etcd?.close();
    }
  });
});
