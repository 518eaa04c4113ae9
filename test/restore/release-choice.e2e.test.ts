/**
 * A restore runs the release its backups were taken from, with real etcd 3.5 and 3.6 (`npm run
 * peers`) laid out as the image ships them: one folder per minor in --etcd-bin-dir. A sidecar
 * (`serve`) backs up a 3.6 member and the CLI restore picks 3.6 by itself; a 3-member cluster is
 * upgraded 3.5 -> 3.6 member by member under writes with its sidecars running, and the chain across
 * the upgrade restores with 3.6, or is refused where only 3.5 is there.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { EtcdProcess } from '../../src/etcd/process.js';
import { etcdTools, etcdVersion } from '../../src/etcd/tools.js';
import { restore, RestoreError, type RestoreResult } from '../../src/restore/index.js';
import { restoreDrill } from '../../src/restore/drill.js';
import type { Chain } from '../../src/snapshot/chain.js';
import type { SnapshotRef } from '../../src/snapshot/names.js';
import type { SnapStore } from '../../src/snapstore/types.js';
import { eventually, freePort, sleep, TestCluster } from '../helpers/cluster.js';
import { restoreMemberFlags, restoreResultOf, runCli } from '../helpers/cli.js';
import { releaseDir } from '../helpers/etcd-release.js';
import { keyspaceAt, loneMember } from '../helpers/replay.js';
import { capturingLogger, getJson, spawnSidecar, startTestSidecar } from '../helpers/sidecar.js';
import { assertChainEvents, backupStore, currentChain } from '../helpers/snapshots.js';

const V35 = releaseDir('3.5');
const V36 = releaseDir('3.6');
const missing = [V35 ? undefined : '3.5', V36 ? undefined : '3.6'].filter((m) => m !== undefined);
const SKIP = missing.length > 0 ? `run npm run peers to build etcd ${missing.join(' and ')} (.peers/etcd-v<minor>)` : undefined;

/** --etcd-bin-dir as the image lays it out: v3.5/ and v3.6/ (symlinks to the built peers). */
function binDirOf(root: string, minors: Record<string, string>): string {
  const dir = join(root, `etcd-${Object.keys(minors).join('-')}`);
  mkdirSync(dir, { recursive: true });
  for (const [minor, target] of Object.entries(minors)) symlinkSync(target, join(dir, `v${minor}`));
  return dir;
}

const minorOf = (v: string | undefined): string | undefined => /^(\d+\.\d+)\./.exec(v ?? '')?.[1];

/** `ebs-etcd-version` of every object of the chain, in chain order. */
async function recordedVersions(store: SnapStore, chain: Chain): Promise<{ ref: SnapshotRef; version: string | undefined }[]> {
  const refs = [chain.full as SnapshotRef, ...chain.links.map((l) => l.delta)];
  return Promise.all(refs.map(async (ref) => ({ ref, version: (await store.head(ref.name))?.metadata['ebs-etcd-version'] })));
}

/** The cluster version etcd reports on its HTTP /version (the lowest of its members' releases, once they agree). */
async function clusterVersion(clientURL: string): Promise<string | undefined> {
  const res = await fetch(`${clientURL}/version`).catch(() => undefined);
  if (!res?.ok) return undefined;
  return ((await res.json()) as { etcdcluster?: string }).etcdcluster;
}

/** Starts etcd `binary` on a restored data dir and hands a client to `check`. */
async function onRestored(dataDir: string, peerURL: string, binary: string, work: string, check: (client: Etcd3) => Promise<void>): Promise<void> {
  const clientURL = `http://127.0.0.1:${await freePort()}`;
  const etcd = new EtcdProcess({ ...loneMember({ name: 'r1', dataDir, clientURL, peerURL, token: 'restored', logFile: join(work, 'restored-etcd.log') }), etcdBinary: binary });
  etcd.start();
  const client = new Etcd3({ hosts: [clientURL] });
  try {
    await eventually('restored etcd up', async () => (await client.maintenance.status().catch(() => undefined)) ?? undefined, 30_000);
    await check(client);
  } finally {
    client.close();
    await etcd.stop();
  }
}

describe('a sidecar (serve) backing up etcd 3.6 with a folder per minor; the restore picks 3.6 by itself', { skip: SKIP, timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let work: string;
  let binDir: string;
  let source: Etcd3;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'ebs-release-serve-'));
    binDir = binDirOf(work, { '3.5': V35 as string, '3.6': V36 as string });
    cluster = await TestCluster.start(1, { etcdBinary: join(V36 as string, 'etcd') });
    source = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    source?.close();
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('every snapshot records 3.6, /status says so, and the CLI restore runs v3.6 although --etcd-version says 3.5', async () => {
    const version = (await source.maintenance.status()).version;
    assert.equal(minorOf(version), '3.6');
    for (let i = 0; i < 30; i++) await source.put(`/before/${i}`).value(`v${i}`);
    const sidecar = await spawnSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '300ms', 'etcd-bin-dir': binDir });
    const store = backupStore(cluster);
    let finalRevision: number;
    try {
      await eventually('full snapshot', async () => (await currentChain(store)).full, 30_000);
      for (let i = 0; i < 50; i++) await source.put(`/after/${i % 7}`).value(`v${i}`);
      finalRevision = Number((await source.maintenance.status()).header.revision);
      await eventually('deltas up to the last write', async () => ((await currentChain(store)).lastRevision === finalRevision ? true : undefined), 30_000);
      // The API's record of a snapshot it takes says the version too.
      const full = await fetch(`${sidecar.url}/snapshot/full`, { method: 'POST' });
      assert.equal(full.status, 201, await full.clone().text());
      assert.equal(((await full.json()) as { etcdVersion?: string }).etcdVersion, version);
      const status = await getJson<{ backup: { etcdVersion?: string } }>(`${sidecar.url}/status`);
      assert.equal(status.body.backup.etcdVersion, version);
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
    }
    const chain = await currentChain(store);
    const recorded = await recordedVersions(store, chain);
    assert.ok(recorded.length >= 1);
    for (const r of recorded) assert.equal(r.version, version, `${r.ref.name} records ${r.version}`);

    const dataDir = join(work, 'restored', 'data');
    const peer = `http://127.0.0.1:${await freePort()}`;
    const member = restoreMemberFlags(dataDir, peer, `file://${cluster.dir}/backups`);
    const run = await runCli(['restore', ...member, '--etcd-bin-dir', binDir, '--etcd-version', '3.5']);
    assert.equal(run.code, 0, run.stderr);
    const result = restoreResultOf(run) as RestoreResult;
    assert.equal(result.revision, finalRevision);
    assert.deepEqual([result.etcd.minor, result.etcd.by, result.etcd.binary], ['3.6', 'backup', join(binDir, 'v3.6', 'etcd')]);
    assert.match(run.stdout, /--etcd-version says the cluster runs etcd 3\.5/, 'the stale --etcd-version is warned about');
    await onRestored(dataDir, peer, join(V36 as string, 'etcd'), work, async (client) => {
      assert.deepEqual(await keyspaceAt(client, finalRevision), await keyspaceAt(source, finalRevision));
    });
  });
});

// As the leader e2e: quick handoffs, so the backup role moves within seconds when its member stops.
const FLAGS = {
  'leader-check-period': '1s',
  'leader-lost-after': '3',
  'heartbeat-period': '1s',
  'heartbeat-ttl': '4s',
  'delta-snapshot-period': '500ms',
  'health-check-period': '5s',
  'etcd-version': '3.5',
};

describe('a rolling upgrade 3.5 -> 3.6 of three members with their sidecars running, under writes', { skip: SKIP, timeout: 600_000 }, () => {
  let cluster: TestCluster;
  let work: string;
  let client: Etcd3;
  let store: SnapStore;
  let chain: Chain;
  let finalRevision: number;
  /** The revision at which etcd's cluster version was seen at 3.6. */
  let upgradedAt: number;
  const sidecars: Awaited<ReturnType<typeof startTestSidecar>>[] = [];
  const writes = { ok: 0, failed: 0, okDuringUpgrades: 0, last: '' };
  const { log } = capturingLogger('info');

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'ebs-release-upgrade-'));
    const binDir = binDirOf(work, { '3.5': V35 as string, '3.6': V36 as string });
    cluster = await TestCluster.start(3, { etcdBinary: join(V35 as string, 'etcd') });
    client = new Etcd3({ hosts: cluster.endpoints });
    for (const m of cluster.members) sidecars.push(await startTestSidecar(cluster, m.name, { ...FLAGS, 'etcd-bin-dir': binDir }));
    store = backupStore(cluster);
    assert.equal(minorOf(await clusterVersion(cluster.members[0]?.clientURL as string)), '3.5');
    await eventually('the first full snapshot', async () => (await currentChain(store)).full, 60_000);

    // One writer all along: a write that fails (its member just stopped) is retried, never skipped.
    let writing = true;
    let upgrading = false;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        try {
          await client.put(`/w/${i % 50}`).value(`v${i}`);
          writes.ok++;
          writes.last = `v${i}`;
          if (upgrading) writes.okDuringUpgrades++;
        } catch {
          writes.failed++;
          i--;
          await sleep(100);
        }
        await sleep(20);
      }
    })();
    try {
      await sleep(2_000);
      upgrading = true;
      for (const m of cluster.members) {
        await cluster.upgrade(m.name, join(V36 as string, 'etcd'));
        await sleep(3_000);
      }
      upgrading = false;
      upgradedAt = await eventually(
        'the cluster version at 3.6',
        async () => (minorOf(await clusterVersion(cluster.members[0]?.clientURL as string)) === '3.6' ? Number((await client.maintenance.status()).header.revision) : undefined),
        60_000,
        500,
      );
      await sleep(3_000);
    } finally {
      writing = false;
      await writer;
    }
    finalRevision = Number((await client.maintenance.status()).header.revision);
    chain = await eventually('the chain up to the last write', async () => ((await currentChain(store)).lastRevision === finalRevision ? currentChain(store) : undefined), 60_000);
  });
  after(async () => {
    for (const s of sidecars) await s.close().catch(() => {});
    client?.close();
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('backups go on across the upgrade without a missing revision, and the recorded version turns 3.6 with the cluster', async (t) => {
    assert.ok(writes.okDuringUpgrades > 50, `only ${writes.okDuringUpgrades} writes while members were upgraded`);
    assert.equal(chain.contiguous, true, `gaps: ${JSON.stringify(chain.gaps)}`);
    await assertChainEvents(store, chain);
    const recorded = await recordedVersions(store, chain);
    assert.equal(minorOf(recorded[0]?.version), '3.5', `the chain's full snapshot ${recorded[0]?.ref.name} was taken before the upgrade`);
    const minors = recorded.map((r) => minorOf(r.version));
    t.diagnostic(
      `writes: ${writes.ok} (${writes.okDuringUpgrades} while members were upgraded, ${writes.failed} retried); chain: full at ${chain.full?.lastRevision}, ${chain.links.length} deltas to ${chain.lastRevision}; ` +
        `recorded 3.5 x${minors.filter((m) => m === '3.5').length}, 3.6 x${minors.filter((m) => m === '3.6').length}; cluster version 3.6 at revision ${upgradedAt}`,
    );
    assert.ok(
      minors.every((m) => m === '3.5' || m === '3.6'),
      `recorded: ${minors.join(' ')}`,
    );
    // A release recorded never goes back: once a snapshot says 3.6, every later one does.
    assert.ok(minors.indexOf('3.6') > 0, 'no snapshot recorded 3.6');
    assert.ok(
      minors.slice(minors.indexOf('3.6')).every((m) => m === '3.6'),
      `recorded: ${minors.join(' ')}`,
    );
    for (const r of recorded) if (r.ref.startRevision > upgradedAt) assert.equal(minorOf(r.version), '3.6', `${r.ref.name}, after the cluster turned 3.6, records ${r.version}`);
    const leader = sidecars.find((s) => s.snapshotter);
    assert.ok(leader, 'no sidecar takes snapshots');
    const status = await getJson<{ backup: { etcdVersion?: string } }>(`${leader.url}/status`);
    assert.equal(minorOf(status.body.backup.etcdVersion), '3.6');
  });

  it('a restore of the chain reaches the last write with the v3.6 tools, although --etcd-version still says 3.5', async () => {
    const binDir = join(work, 'etcd-3.5-3.6');
    const dataDir = join(work, 'restored', 'data');
    const peerURL = `http://127.0.0.1:${await freePort()}`;
    const result = await restore({
      store,
      dataDir,
      name: 'r1',
      initialCluster: `r1=${peerURL}`,
      initialClusterToken: 'restored',
      initialAdvertisePeerUrls: [peerURL],
      log,
      etcdBinDir: binDir,
      etcdVersion: '3.5',
    });
    assert.equal(result.revision, finalRevision);
    assert.deepEqual([result.etcd.minor, result.etcd.by], ['3.6', 'backup']);
    assert.equal(result.etcd.binary, join(binDir, 'v3.6', 'etcd'));
    await onRestored(dataDir, peerURL, join(V36 as string, 'etcd'), work, async (restored) => {
      assert.equal((await restored.get(`/w/${(writes.ok - 1) % 50}`).string()) ?? '', writes.last, 'the last write is there');
      assert.deepEqual(await keyspaceAt(restored, finalRevision), await keyspaceAt(client, finalRevision));
    });
    // The drill runs the same release for its own etcd.
    const drill = await restoreDrill({ store, scratchDir: join(work, 'drill'), log, etcdBinDir: binDir, etcdVersion: '3.5' });
    assert.deepEqual(drill.problems, []);
    assert.equal(drill.restore?.etcd.minor, '3.6');
    assert.equal((await etcdVersion(etcdTools(join(binDir, 'v3.6')))).minor, '3.6');
  });

  it('with only v3.5 in --etcd-bin-dir, the restore of the upgraded chain is refused, naming 3.6 and v3.5, and no data dir is made', async () => {
    const only35 = binDirOf(join(work, 'only'), { '3.5': V35 as string });
    const dataDir = join(work, 'refused', 'data');
    const peerURL = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(
      restore({ store, dataDir, name: 'r1', initialCluster: `r1=${peerURL}`, initialClusterToken: 'refused', initialAdvertisePeerUrls: [peerURL], log, etcdBinDir: only35, etcdVersion: '3.5' }),
      (err: unknown) =>
        err instanceof RestoreError && err.code === 'etcd_version' && /the backups need etcd 3\.6 \(.+ was taken from etcd 3\.6\.\d+\) but --etcd-bin-dir holds v3\.5/.test(err.message),
    );
    assert.equal(existsSync(dataDir), false);
    assert.equal(existsSync(`${dataDir}.part`), false);
  });
});
