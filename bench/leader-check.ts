// What one role-loop check costs and what it sees, against real etcd 3.4 members on loopback:
//  - a healthy leader's check (status + linearizable read) and a follower's (status only),
//  - a leader whose two peers are frozen (SIGSTOP): what it reports check by check until it knows
//    it lost quorum (etcd 3.4: pre-vote off, CheckQuorum after an election timeout), and that the
//    linearizable read refuses to confirm it from the first check.
// Prints a table, then the same figures as JSON. Run: npx tsx bench/leader-check.ts
import { checkOwnMember } from '../src/cluster/own-member.js';
import { EtcdClient } from '../src/etcd/client.js';
import { createLogger } from '../src/logger.js';
import { sleep, TestCluster } from '../test/helpers/cluster.js';

const DEADLINE_MS = 2_000;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const cluster = await TestCluster.start(3);
const rows: Record<string, unknown>[] = [];
// The sidecar's own per-member client (no retries, no breaker), as the role loop uses it.
const etcd = new EtcdClient(
  { endpoints: cluster.endpoints, callTimeoutMs: DEADLINE_MS, keepAliveTimeMs: 10_000, keepAliveTimeoutMs: 5_000, permitWithoutStream: false, autoSyncIntervalMs: 0 },
  createLogger('silent'),
);
try {
  const leader = cluster.member(await cluster.leader());
  const followers = cluster.members.filter((m) => m.name !== leader.name);
  for (const [expected, m] of [
    ['leader', leader],
    ['follower', followers[0]],
  ] as const) {
    const c = etcd.member(m?.clientURL as string);
    await checkOwnMember(c, DEADLINE_MS);
    const ms: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const r = await checkOwnMember(c, DEADLINE_MS);
      ms.push(performance.now() - t);
      if (r.result.kind !== expected) throw new Error(`healthy ${expected} checked as ${r.result.kind}`);
    }
    ms.sort((a, b) => a - b);
    rows.push({ case: `healthy ${expected}`, checks: ms.length, p50Ms: +quantile(ms, 0.5).toFixed(2), p99Ms: +quantile(ms, 0.99).toFixed(2), maxMs: +(ms[ms.length - 1] as number).toFixed(2) });
  }

  const c = etcd.member(leader.clientURL);
  for (const f of followers) cluster.freeze(f.name);
  const frozenAt = performance.now();
  for (let i = 0; i < 8; i++) {
    const t = performance.now();
    const r = await checkOwnMember(c, DEADLINE_MS);
    rows.push({
      case: `minority leader, check ${i + 1}`,
      atMs: Math.round(t - frozenAt),
      tookMs: Math.round(performance.now() - t),
      statusSaysLeader: r.facts ? r.facts.leaderId === r.facts.memberId : 'no status',
      verdict: r.result.kind,
    });
    await sleep(500);
  }
  for (const f of followers) cluster.thaw(f.name);
} finally {
  etcd.close();
  await cluster.stop();
}
console.table(rows);
console.log(JSON.stringify(rows));
