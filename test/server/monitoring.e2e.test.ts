import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { drillMetrics } from '../../src/cli/drill-textfile.js';
import { eventually, TestCluster } from '../helpers/cluster.js';
import { alertRules, dashboardQueries, declaredMetrics, FUTURE_METRICS, metricNames } from '../helpers/monitoring.js';
import { startTestSidecar } from '../helpers/sidecar.js';

// deploy/monitoring/ against a running sidecar: every metric the PrometheusRule and the Grafana
// dashboard use is on /metrics of a backup leader that has taken a full and a delta snapshot,
// except the restore drill's (a textfile `snapshots verify` writes, checked against its writer) and
// the ones documented as not produced yet (FUTURE_METRICS). And the alarm gauge reads what a real
// etcd reports: NOSPACE raised through etcd's own Alarm API.

describe('monitoring: the metrics deploy/monitoring uses, on a running sidecar', () => {
  let cluster: TestCluster;
  let sidecar: Awaited<ReturnType<typeof startTestSidecar>>;
  let client: Etcd3;
  const scrape = async (): Promise<string> => (await fetch(`${sidecar.url}/metrics`)).text();

  before(async () => {
    cluster = await TestCluster.start(1);
    sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '300ms', 'secondary-store': `file://${cluster.dir}/secondary` });
    client = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    client?.close();
    await sidecar?.close();
    await cluster?.stop();
  });

  it('every metric the rules and the dashboard use is exported, except the drill textfile and those not built yet', async () => {
    await eventually('full snapshot uploaded', async () => (/^etcd_backup_sidecar_snapshots_total\{kind="full"\} [1-9]/m.test(await scrape()) ? true : undefined), 30_000);
    await client.put('monitoring').value('v');
    await eventually('delta uploaded', async () => (/^etcd_backup_sidecar_snapshots_total\{kind="delta"\} [1-9]/m.test(await scrape()) ? true : undefined), 10_000);
    await sidecar.monitor.check();
    const text = await scrape();
    const declared = declaredMetrics(text);
    const drill = { pass: true, problems: [], durationMs: 1, restore: { revision: 1, deltasApplied: 0, durationMs: 1 } as never };
    const fromDrill = declaredMetrics(drillMetrics(drill, new Date()));
    const used = new Map<string, string>();
    for (const r of alertRules()) for (const n of metricNames(r.expr)) used.set(n, `alert ${r.alert}`);
    for (const q of dashboardQueries()) for (const n of metricNames(q.expr)) used.set(n, `panel ${q.panel}`);
    assert.ok(used.size > 25, `${used.size} metrics found in the rules and the dashboard`);
    const missing = [...used].filter(([n]) => !declared.has(n) && !(n in FUTURE_METRICS) && !fromDrill.has(n));
    assert.deepEqual(missing, []);
    // Declared is not enough for what a backup leader must show: these carry samples.
    for (const n of ['backup_leader_known 1', 'chain_contiguous{full="', 'snapshot_period_seconds{kind="delta"} 0.3', 'member_alarm{member="m1"']) {
      assert.ok(text.includes(`etcd_backup_sidecar_${n}`), n);
    }
    // The drill's metrics are not the sidecar's: they never appear on its /metrics.
    assert.ok(![...fromDrill].some((n) => declared.has(n)));
  });

  it("member_alarm reads etcd's NOSPACE alarm as a real member reports it", async () => {
    const id = (await client.cluster.memberList({})).members[0]?.ID as string;
    await client.maintenance.alarm({ action: 'Activate', memberID: id, alarm: 'Nospace' });
    try {
      await sidecar.monitor.check();
      const text = await scrape();
      assert.match(text, new RegExp(`etcd_backup_sidecar_member_alarm\\{member="m1",member_id="${BigInt(id).toString(16)}",alarm="NOSPACE"\\} 1`));
      assert.match(text, /etcd_backup_sidecar_member_alarm\{member="m1",member_id="[0-9a-f]+",alarm="CORRUPT"\} 0/);
    } finally {
      await client.maintenance.alarm({ action: 'Deactivate', memberID: id, alarm: 'Nospace' });
    }
    await sidecar.monitor.check();
    assert.match(await scrape(), /etcd_backup_sidecar_member_alarm\{member="m1",member_id="[0-9a-f]+",alarm="NOSPACE"\} 0/);
  });
});
