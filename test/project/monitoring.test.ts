import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { drillMetrics, writeDrillTextfile } from '../../src/cli/drill-textfile.js';
import { parseAlarm } from '../../src/etcd/alarms.js';
import { joinStatus, type EndpointStatus } from '../../src/etcd/status.js';
import type { Member } from '../../src/etcd/members.js';
import { Metrics } from '../../src/server/metrics.js';
import { restorableChain } from '../../src/snapshot/chain.js';
import { parseSnapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import type { SnapshotRecord } from '../../src/snapshot/record.js';
import { anchors } from '../helpers/markdown.js';
import { alertRules, dashboard, dashboardQueries, declaredMetrics, FUTURE_METRICS, havePromrules, metricNames, prometheusRule, PROMRULES, ROOT, withVariablesSet } from '../helpers/monitoring.js';

// deploy/monitoring/ checked without a Prometheus or a Grafana: the rules through Prometheus' own
// parser (the promrules peer), the alerts' runbooks against docs/operations.md, the dashboard's
// wiring, and the metrics the sidecar adds for them. test/server/monitoring.e2e.test.ts checks that every
// metric they use is on a running sidecar's /metrics.

const run = promisify(execFile);
const RUNBOOK_BASE = 'https://etcd-backup-sidecar.invalid/docs/operations.md#';
const DRILL = drillMetrics({ pass: true, problems: [], durationMs: 1500, restore: { revision: 42, deltasApplied: 3, durationMs: 900 } as never }, new Date(1_700_000_000_000));

describe('PrometheusRule', () => {
  const rules = alertRules();

  it('is a monitoring.coreos.com/v1 PrometheusRule with the alerts issue 16 asks for', () => {
    const rule = prometheusRule();
    assert.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(rule.kind, 'PrometheusRule');
    const names = rules.map((r) => r.alert);
    for (const want of [
      'EtcdBackupFullSnapshotTooOld',
      'EtcdBackupDeltaSnapshotTooOld',
      'EtcdBackupRevisionLagHigh',
      'EtcdBackupChainGap',
      'EtcdBackupNoLeader',
      'EtcdBackupRestoreDrillFailing',
      'EtcdDefragFailing',
      'EtcdMemberNoSpace',
    ]) {
      assert.ok(names.includes(want), `${want} in ${names.join(', ')}`);
    }
  });

  it('every alert has a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const headings = anchors(join(ROOT, 'docs/operations.md'));
    for (const r of rules) {
      assert.match(r.labels.severity ?? '', /^(critical|warning|info)$/, r.alert);
      assert.ok((r.annotations.summary ?? '').length > 10, `${r.alert}: summary`);
      assert.ok((r.annotations.description ?? '').length > 20, `${r.alert}: description`);
      const url = r.annotations.runbook_url ?? '';
      assert.ok(url.startsWith(RUNBOOK_BASE), `${r.alert}: ${url}`);
      assert.ok(headings.has(url.slice(RUNBOOK_BASE.length)), `${r.alert}: docs/operations.md has no heading for ${url}`);
    }
  });

  it('an alert on a metric not produced yet says so', () => {
    for (const r of rules) {
      for (const name of metricNames(r.expr).filter((n) => n in FUTURE_METRICS)) {
        assert.match(r.annotations.description ?? '', /cannot fire|not (built|exported)/, `${r.alert} uses ${name}: ${FUTURE_METRICS[name]}`);
      }
    }
  });

  it("parses with Prometheus' own rule parser (as promtool check rules)", { skip: havePromrules() ? false : `${PROMRULES} not built (npm run peers)` }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-rules-'));
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, stringify(prometheusRule().spec));
    const { stdout } = await run(PROMRULES, [file]);
    assert.match(stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it('the parser rejects a broken rule file (the check above is not vacuous)', { skip: havePromrules() ? false : `${PROMRULES} not built (npm run peers)` }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-rules-'));
    const file = join(dir, 'rules.yaml');
    const broken = prometheusRule().spec;
    (broken.groups[0]?.rules[0] as { expr: string }).expr = 'max by (job (etcd_backup_sidecar_chain_contiguous)';
    writeFileSync(file, stringify(broken));
    await assert.rejects(run(PROMRULES, [file]), (err: Error & { stderr: string }) => /parse error/.test(err.stderr));
  });
});

describe('Grafana dashboard', () => {
  const d = dashboard();

  it('takes its data source and its cluster, job and pod from template variables', () => {
    const vars = new Map(d.templating.list.map((v) => [v.name, v]));
    assert.equal(vars.get('datasource')?.type, 'datasource');
    assert.equal(vars.get('datasource')?.query, 'prometheus');
    for (const name of ['cluster', 'job', 'pod']) assert.equal(vars.get(name)?.type, 'query', name);
    for (const p of d.panels.filter((x) => x.type !== 'row')) {
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', p.title);
    }
  });

  it("filters every sidecar query by the selection (the drill's series are node_exporter's: by cluster only)", () => {
    for (const { panel, expr } of dashboardQueries()) {
      for (const selector of expr.match(/etcd_backup_sidecar_[a-z_]+\{[^}]*\}/g) ?? []) {
        const want = selector.includes('restore_drill_') ? ['cluster=~"$cluster"'] : ['cluster=~"$cluster"', 'job=~"$job"', 'pod=~"$pod"'];
        for (const w of want) assert.ok(selector.includes(w), `${panel}: ${selector} lacks ${w}`);
      }
      assert.ok(!/etcd_backup_sidecar_[a-z_]+(?![a-z_{])/.test(expr), `${panel}: a metric without a selector in ${expr}`);
    }
  });

  it('shows what issue 16 asks for', () => {
    const used = new Set(dashboardQueries().flatMap((q) => metricNames(q.expr)));
    for (const m of [
      'backup_role',
      'snapshot_latest_timestamp_seconds',
      'delta_revision_lag',
      'delta_buffered_bytes',
      'snapshot_duration_seconds',
      'snapshot_size_bytes',
      'snapshot_failures_total',
      'member_healthy',
      'cluster_has_quorum',
      'member_db_size_bytes',
      'heartbeat_age_seconds',
      'restore_drill_restore_seconds',
    ]) {
      assert.ok(used.has(`etcd_backup_sidecar_${m}`), m);
    }
  });

  it("every query parses with Prometheus' own parser", { skip: havePromrules() ? false : `${PROMRULES} not built (npm run peers)` }, async () => {
    // As recording rules: the one input the rule checker takes.
    const rules = dashboardQueries().map((q, i) => ({ record: `dashboard:query_${i}`, expr: withVariablesSet(q.expr) }));
    const dir = mkdtempSync(join(tmpdir(), 'ebs-dashboard-'));
    const file = join(dir, 'queries.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
    const { stdout } = await run(PROMRULES, [file]);
    assert.match(stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });
});

describe('restore drill textfile', () => {
  it('declares every drill metric the rules and the dashboard use', () => {
    const declared = declaredMetrics(DRILL);
    const used = [...alertRules().map((r) => r.expr), ...dashboardQueries().map((q) => q.expr)].flatMap(metricNames).filter((n) => n.includes('_restore_drill_'));
    assert.ok(used.length >= 5);
    for (const n of used) assert.ok(declared.has(n), n);
    assert.match(DRILL, /^etcd_backup_sidecar_restore_drill_success 1$/m);
    assert.match(DRILL, /^etcd_backup_sidecar_restore_drill_timestamp_seconds 1700000000$/m);
    assert.match(DRILL, /^etcd_backup_sidecar_restore_drill_restore_seconds 0.9$/m);
  });

  it('a drill that failed before restoring says so, with no values it did not get', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-drill-'));
    const file = join(dir, 'drill.prom');
    await writeDrillTextfile(file, { pass: false, problems: ['store unreachable'], durationMs: 10 });
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^etcd_backup_sidecar_restore_drill_success 0$/m);
    assert.doesNotMatch(text, /restore_drill_revision/);
  });
});

const member = (id: string, name: string): Member => ({ id, name, peerURLs: [], clientURLs: [`http://${name}:2379`], isLearner: false, started: true });
const answer = (m: Member, alarms: string[]): EndpointStatus => ({ endpoint: m.clientURLs[0] as string, reachable: true, latencyMs: 1, memberId: m.id, leaderId: 'a', revision: 10, alarms });

describe('metrics added for the alerts', () => {
  it("reads etcd's alarms as Status reports them: every member lists every member's alarms", async () => {
    // AlarmMember's protobuf text, memberID in decimal: 0xa = 10, 0xb = 11.
    assert.deepEqual(parseAlarm('memberID:11 alarm:NOSPACE '), { memberId: 'b', alarm: 'NOSPACE' });
    assert.equal(parseAlarm('etcdserver: no leader'), undefined);
    const a = member('a', 'm1');
    const b = member('b', 'm2');
    const metrics = new Metrics();
    metrics.recordClusterStatus(joinStatus([a, b], [answer(a, ['memberID:11 alarm:NOSPACE ']), answer(b, ['memberID:11 alarm:NOSPACE '])], undefined, performance.now()));
    const text = await metrics.registry.metrics();
    assert.match(text, /member_alarm\{member="m2",member_id="b",alarm="NOSPACE"\} 1/);
    assert.match(text, /member_alarm\{member="m1",member_id="a",alarm="NOSPACE"\} 0/);
    assert.match(text, /member_alarm\{member="m1",member_id="a",alarm="CORRUPT"\} 0/);
  });

  const ref = (name: string): SnapshotRef => parseSnapshotName(name) as SnapshotRef;
  const record = (kind: 'full' | 'delta', start: number, last: number): SnapshotRecord => ({
    name: 'x',
    kind,
    startRevision: start,
    lastRevision: last,
    createdAt: '',
    compression: 'gzip',
    size: 1,
    sha256: '',
    uncompressedSize: 1,
    durationMs: 10,
  });
  const value = async (m: Metrics, name: string): Promise<string | undefined> => new RegExp(`^etcd_backup_sidecar_${name} (\\S+)$`, 'm').exec(await m.registry.metrics())?.[1];

  it("reports the store's chain, extends it with the leader's own uploads, and forgets it on stepping down", async () => {
    const m = new Metrics();
    m.roleChanged('leader', 'unknown');
    m.chainRead(restorableChain([ref('v2/Full-00000000-00000010-1700000000.gz'), ref('v2/Incr-00000011-00000020-1700000100.gz'), ref('v2/Incr-00000030-00000040-1700000200.gz')]));
    assert.equal(await value(m, 'chain_contiguous{full="v2/Full-00000000-00000010-1700000000.gz"}'), '0');
    assert.equal(await value(m, 'chain_last_revision{full="v2/Full-00000000-00000010-1700000000.gz"}'), '20');
    assert.equal(await value(m, 'snapshot_latest_timestamp_seconds{kind="full"}'), '1700000000');
    // The chain's end, not the stranded delta after the gap.
    assert.equal(await value(m, 'snapshot_latest_timestamp_seconds{kind="delta"}'), '1700000100');
    m.uploaded(record('full', 0, 50));
    m.uploaded(record('delta', 51, 60));
    // A delta that does not continue the chain (a listing raced it) leaves it as it was.
    m.uploaded(record('delta', 70, 80));
    assert.equal(await value(m, 'chain_contiguous{full="x"}'), '1');
    assert.equal(await value(m, 'chain_last_revision{full="x"}'), '60');
    assert.equal(await value(m, 'chain_deltas{full="x"}'), '1');
    assert.doesNotMatch(await m.registry.metrics(), /Full-00000000-00000010/);
    m.roleChanged('follower', 'leader');
    assert.doesNotMatch(await m.registry.metrics(), /^etcd_backup_sidecar_chain_/m);
  });

  it('drops the revision lag once this sidecar stops taking snapshots', async () => {
    const m = new Metrics();
    let progress: { uploadedRevision: number; etcdRevision: number; bufferedBytes: number } | undefined = { uploadedRevision: 5, etcdRevision: 9, bufferedBytes: 3 };
    m.followDeltas(() => progress);
    assert.equal(await value(m, 'delta_revision_lag'), '4');
    progress = undefined;
    // prom-client shows an unlabelled gauge as 0 once reset: no longer the stale 4.
    assert.equal(await value(m, 'delta_revision_lag'), '0');
  });

  it('says whether a backup leader is known, and the periods snapshots are due in', async () => {
    const m = new Metrics();
    let known = false;
    m.followLeadership(() => known);
    m.snapshotPeriods(3600_000, 5_000);
    assert.equal(await value(m, 'backup_leader_known'), '0');
    known = true;
    assert.equal(await value(m, 'backup_leader_known'), '1');
    assert.equal(await value(m, 'snapshot_period_seconds{kind="full"}'), '3600');
    assert.equal(await value(m, 'snapshot_period_seconds{kind="delta"}'), '5');
  });
});
