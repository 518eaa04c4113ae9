// Measures the etcd client defaults against real etcd 3.4 members on loopback, to justify them:
//  - healthy call latency (why a 2 s per-attempt deadline is far from false timeouts),
//  - what one frozen (SIGSTOP) follower costs a KV call and a status fan-out, per --etcd-call-timeout,
//  - how long KV calls stall when the raft leader freezes.
// Prints a table, then the same figures as JSON. Run: npm run bench:etcd
import { loadConfig } from '../src/config/index.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from '../src/etcd/client.js';
import { clusterStatus } from '../src/etcd/status.js';
import { createLogger } from '../src/logger.js';
import { TestCluster } from '../test/helpers/cluster.js';

const log = createLogger('silent');

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function client(cluster: TestCluster, flags: Record<string, string> = {}): Promise<EtcdClient> {
  const { config } = loadConfig({
    flags: {
      name: 'm1',
      'data-dir': '/tmp/unused',
      'initial-cluster': cluster.members.map((m) => `${m.name}=${m.peerURL}`).join(','),
      'advertise-client-urls': cluster.endpoints[0],
      endpoints: cluster.endpoints.join(','),
      ...flags,
    },
    env: {},
    requireMember: true,
  });
  return createEtcdClient(etcdAccessFromConfig(config), log);
}

async function timed(fn: () => unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const results: Record<string, unknown> = {};
const rows: string[][] = [];

const cluster = await TestCluster.start(3);
try {
  // 1. Healthy latency.
  const c = await client(cluster);
  const lat: number[] = [];
  for (let i = 0; i < 500; i++) lat.push(await timed(() => c.etcd.put(`bench/${i % 50}`).value('x'.repeat(100))));
  for (let i = 0; i < 500; i++) lat.push(await timed(() => c.etcd.get(`bench/${i % 50}`).string()));
  lat.sort((a, b) => a - b);
  results['healthy'] = { calls: lat.length, p50Ms: quantile(lat, 0.5), p99Ms: quantile(lat, 0.99), maxMs: lat.at(-1) };
  rows.push(['healthy put+get (1000 calls)', `p50 ${quantile(lat, 0.5).toFixed(1)} ms`, `p99 ${quantile(lat, 0.99).toFixed(1)} ms`, `max ${(lat.at(-1) ?? 0).toFixed(1)} ms`]);
  c.close();

  // 2. One frozen follower, per call timeout.
  const perTimeout: Record<string, unknown> = {};
  for (const timeout of ['500ms', '1s', '2s', '5s']) {
    const k = await client(cluster, { 'etcd-call-timeout': timeout });
    for (let i = 0; i < 10; i++) await k.etcd.get('warm').string();
    const leader = await cluster.leader();
    const victim = cluster.members.find((m) => m.name !== leader)?.name as string;
    cluster.freeze(victim);
    const calls: number[] = [];
    for (let i = 0; i < 10; i++) calls.push(await timed(() => k.etcd.put(`frozen/${i}`).value('v')));
    const statusMs = await timed(() => clusterStatus(k, k.memberTimeoutMs, cluster.endpoints));
    cluster.thaw(victim);
    await cluster.waitHealthy();
    k.close();
    const worst = Math.max(...calls);
    perTimeout[timeout] = { firstCallMs: calls[0], worstCallMs: worst, tenCallsMs: calls.reduce((a, b) => a + b, 0), statusFanOutMs: statusMs };
    rows.push([
      `frozen follower, --etcd-call-timeout=${timeout}`,
      `worst KV call ${worst.toFixed(0)} ms`,
      `10 calls ${calls.reduce((a, b) => a + b, 0).toFixed(0)} ms`,
      `status fan-out ${statusMs.toFixed(0)} ms`,
    ]);
  }
  results['frozenFollower'] = perTimeout;

  // 3. Frozen leader with the defaults: how long until writes succeed again.
  const d = await client(cluster);
  for (let i = 0; i < 10; i++) await d.etcd.get('warm').string();
  const leader = await cluster.leader();
  cluster.freeze(leader);
  const stallMs = await timed(() => d.etcd.put('after-leader-freeze').value('v'));
  const nextMs = await timed(() => d.etcd.put('after-leader-freeze-2').value('v'));
  cluster.thaw(leader);
  d.close();
  results['frozenLeader'] = { firstWriteMs: stallMs, nextWriteMs: nextMs, electionTimeoutMs: 1000 };
  rows.push(['frozen leader, defaults (election timeout 1 s)', `first write ${stallMs.toFixed(0)} ms`, `next write ${nextMs.toFixed(1)} ms`, '']);
} finally {
  await cluster.stop();
}

const width = [48, 26, 22, 24];
console.log(['scenario', 'a', 'b', 'c'].map((h, i) => h.padEnd(width[i] ?? 20)).join(' | '));
for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(width[i] ?? 20)).join(' | '));
console.log(JSON.stringify(results, null, 2));
process.exit(0);
