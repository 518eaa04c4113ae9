import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { restore } from '../../src/restore/index.js';
import { replayRatesFile } from '../../src/restore/replay-rates.js';
import type { StatusBody } from '../../src/server/schemas.js';
import { latestFull, restorableChain } from '../../src/snapshot/chain.js';
import type { SnapshotRecord } from '../../src/snapshot/record.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { keyspaceAt, startRestored } from '../helpers/replay.js';
import { capturingLogger, getJson, startTestSidecar } from '../helpers/sidecar.js';
import { backupStore, currentChain } from '../helpers/snapshots.js';

const run = promisify(execFile);

async function etcdRevision(client: Etcd3): Promise<number> {
  return Number((await client.maintenance.status()).header.revision);
}

/** Writers putting keys until stopped: the write load the backup leader works under. */
function writeLoad(client: Etcd3, writers: number): { stop(): Promise<number> } {
  let running = true;
  let written = 0;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let i = 0; running; i++) {
      await client.put(`/load/${w}/${i % 500}`).value(`v${i}`);
      written++;
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return written;
    },
  };
}

describe('recovery-time-bounded full snapshots', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  before(async () => {
    cluster = await TestCluster.start(1);
    client = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  it('the backup leader takes a full snapshot by itself once the restore estimate passes the objective, under write load', async (t) => {
    // The fixed part alone is about 3 s, so 5 s leaves about 2,000 revisions at the default rate.
    const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '200ms', 'restore-time-objective': '5s', 'full-snapshot-min-interval': '1s' });
    const store = backupStore(cluster);
    const load = writeLoad(client, 8);
    try {
      const first = await eventually('full snapshot at start', async () => (await currentChain(store)).full, 20_000);
      const status = await eventually(
        'a restore estimate in /status',
        async () => {
          const s = (await getJson<StatusBody>(`${sidecar.url}/status`)).body;
          return s.backup.restoreEstimate && s.backup.restoreEstimate.revisions > 0 ? s : undefined;
        },
        30_000,
      );
      const estimate = status.backup.restoreEstimate;
      assert.ok(estimate);
      assert.equal(estimate.objectiveSeconds, 5);
      // No restore ran on this member: the default rate, and /status says so.
      assert.deepEqual([estimate.rate.measured, estimate.rate.revisionsPerSecond], [false, 1000]);
      assert.match(estimate.rate.source, /default/);
      assert.match(estimate.fullSource, /^default/);
      const metrics = await (await fetch(`${sidecar.url}/metrics`)).text();
      assert.match(metrics, /^etcd_backup_sidecar_restore_estimate_seconds \d/m);

      const second = await eventually(
        'a full snapshot taken for the objective',
        async () => {
          const full = latestFull(await listSnapshots(store));
          return full && full.lastRevision > first.lastRevision ? full : undefined;
        },
        90_000,
      );
      const why = sidecar.lines.map((l) => JSON.parse(l) as { msg?: string; reason?: string }).find((l) => l.msg === 'restore time objective: full snapshot due');
      assert.ok(why, 'the log says why the full snapshot was taken');
      assert.match(why.reason ?? '', /passes the restore time objective of 5 s/);
      t.diagnostic(`${why.reason ?? ''}; full snapshots at revisions ${first.lastRevision} and ${second.lastRevision}`);
      assert.ok(
        sidecar.lines.some((l) => l.includes('full snapshot starting') && l.includes('passes the restore time objective')),
        'the full snapshot started for the objective',
      );
      // Under continuing load the chain starts again from the new full snapshot.
      assert.ok(second.lastRevision > first.lastRevision + 2000, `the objective's snapshot at ${second.lastRevision} follows about 2,000 revisions after ${first.lastRevision}`);
    } finally {
      await load.stop();
      await sidecar.close();
    }
  });
});

describe('compact', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  let work: string;
  before(async () => {
    cluster = await TestCluster.start(1);
    client = new Etcd3({ hosts: cluster.endpoints, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    work = mkdtempSync(join(tmpdir(), 'ebs-compact-'));
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** Puts, overwrites, deletes, a leased key and multi-key transactions. */
  async function writeHistory(tag: string): Promise<number> {
    const lease = client.lease(600);
    await lease.put(`/${tag}/leased`).value('x');
    for (let i = 0; i < 1500; i++) await client.put(`/${tag}/k/${i % 300}`).value(`v${i}`);
    await client.delete().prefix(`/${tag}/k/1`);
    for (let i = 0; i < 20; i++)
      await client
        .if(`/${tag}/k/5`, 'Version', '>', 0)
        .then(client.put(`/${tag}/t/${i}/a`).value('1'), client.put(`/${tag}/t/${i}/b`).value('2'))
        .commit();
    return etcdRevision(client);
  }

  const flags = { 'snapshot-leader': 'always', 'delta-snapshot-period': '200ms', 'restore-time-objective': '0' };

  it('turns a chain of a full snapshot and deltas into one full snapshot at its last revision, through the CLI (sidecar down) and the route, and a restore reaches the same keyspace key for key', async (t) => {
    const store = backupStore(cluster);
    const m = cluster.member('m1');

    // A chain of full + deltas, then the sidecar goes away: the CLI compacts offline.
    let sidecar = await startTestSidecar(cluster, 'm1', flags);
    await eventually('full snapshot at start', async () => (await currentChain(store)).full, 20_000);
    const firstEnd = await writeHistory('a');
    const chainA = await eventually(
      'deltas up to the last write',
      async () => {
        const c = await currentChain(store);
        return c.lastRevision === firstEnd ? c : undefined;
      },
      30_000,
    );
    assert.ok(chainA.links.length > 1, 'the chain has deltas');
    const clusterId = (await store.head(chainA.full?.name ?? ''))?.metadata['ebs-cluster-id'];
    assert.ok(clusterId);
    await sidecar.close();

    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', 'compact', '--store', `file://${cluster.dir}/backups`, '--name', 'm1', '--data-dir', m.dataDir, '--log-level', 'warn'],
      { env: { ...process.env, EBS_STORE: '' } },
    );
    const compacted = JSON.parse(stdout) as SnapshotRecord;
    assert.equal(compacted.kind, 'full');
    assert.equal(compacted.lastRevision, firstEnd, "the new full snapshot is at the chain's last revision");
    const afterCli = restorableChain(await listSnapshots(store));
    assert.equal(afterCli.full?.name, compacted.name, 'a restore now starts from the compacted snapshot');
    assert.deepEqual(afterCli.links, [], 'and replays nothing');
    assert.equal((await store.head(compacted.name))?.metadata['ebs-cluster-id'], clusterId, "it carries the chain's cluster ID");
    // The compaction's replay is this member's measured rate.
    const rates = JSON.parse(readFileSync(replayRatesFile(m.dataDir, 'm1'), 'utf8')) as { samples: { kind: string; revisions: number; replayMs: number; fullMs: number }[] };
    const measured = rates.samples.at(-1);
    if (measured)
      t.diagnostic(
        `compaction replayed ${measured.revisions} revisions in ${measured.replayMs} ms (${Math.round((measured.revisions * 1000) / measured.replayMs)}/s), full snapshot part ${measured.fullMs} ms`,
      );
    assert.equal(rates.samples.at(-1)?.kind, 'compact');
    assert.equal(rates.samples.at(-1)?.revisions, firstEnd - (chainA.full?.lastRevision ?? 0));

    // The sidecar continues the chain from the compacted snapshot; the backup leader compacts over the API.
    sidecar = await startTestSidecar(cluster, 'm1', flags);
    try {
      const secondEnd = await writeHistory('b');
      await eventually('deltas up to the last write', async () => ((await currentChain(store)).lastRevision === secondEnd ? true : undefined), 30_000);
      const res = await fetch(`${sidecar.url}/snapshot/compact`, { method: 'POST' });
      assert.equal(res.status, 201);
      const record = (await res.json()) as SnapshotRecord;
      assert.deepEqual([record.kind, record.lastRevision], ['full', secondEnd]);
      assert.ok(sidecar.lines.some((l) => l.includes("compaction: full snapshot uploaded at the chain's last revision")));
      const again = await fetch(`${sidecar.url}/snapshot/compact`, { method: 'POST' });
      assert.equal(again.status, 409);
      assert.equal(((await again.json()) as { error: string }).error, 'nothing_to_compact');
    } finally {
      await sidecar.close();
    }

    // A restore from the store now starts at the compacted snapshot and holds every key as etcd does.
    const final = await etcdRevision(client);
    const dir = join(work, 'restored');
    const peerURL = `http://127.0.0.1:${await freePort()}`;
    const { log } = capturingLogger();
    const result = await restore({ store, dataDir: join(dir, 'data'), name: 'r1', initialCluster: `r1=${peerURL}`, initialClusterToken: 'restored', initialAdvertisePeerUrls: [peerURL], log });
    assert.equal(result.revision, final);
    assert.equal(result.deltasApplied, 0);
    const restored = await startRestored(dir, 'r1', peerURL);
    try {
      assert.deepEqual(await keyspaceAt(restored.client, final), await keyspaceAt(client, final));
    } finally {
      restored.client.close();
      await restored.etcd.stop();
    }
    assert.ok(existsSync(replayRatesFile(m.dataDir, 'm1')));
  });
});
