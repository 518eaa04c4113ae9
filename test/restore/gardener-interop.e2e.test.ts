import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli.js';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { restore, type RestoreResult } from '../../src/restore/index.js';
import { restorableChain, type Chain } from '../../src/snapshot/chain.js';
import { parseSnapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { eventually, freePort, sleep, TestCluster } from '../helpers/cluster.js';
import { gzipMembers } from '../helpers/gzip.js';
import { ManagedCluster } from '../helpers/managed.js';
import { keyspaceAt, startRestored } from '../helpers/replay.js';
import { capturingLogger, startTestSidecar } from '../helpers/sidecar.js';

// gardener etcd-backup-restore's own binary against ours, both ways, on its `Local` provider: a
// folder `$HOME/<container>/<prefix>/v2/`, which is our `file://$HOME/<container>/<prefix>`.

const ETCDBRCTL = resolve('.peers/etcdbrctl/etcdbrctl');
const CONTAINER = 'store';
const PREFIX = 'etcd-main';
/** gardener restores deltas with an embedded etcd 3.5, which marks the data dir 3.5: etcd 3.4 refuses to start on it. */
const ETCD_35 = resolve('.peers/etcd-v3.5/etcd');
const skip = !existsSync(ETCDBRCTL)
  ? `gardener's etcdbrctl is missing (${ETCDBRCTL}): npm run peers builds it with Go`
  : !existsSync('dist/cli.js')
    ? 'dist/ not built; npm test builds it first'
    : false;

/** gardener's store flags and the folder they name, for a HOME of the test's own. */
function gardenerStore(home: string): { flags: string[]; root: string; url: string } {
  const root = join(home, CONTAINER, PREFIX);
  return { flags: ['--storage-provider', 'Local', '--store-container', CONTAINER, '--store-prefix', PREFIX], root, url: `file://${root}` };
}

function runEtcdbrctl(home: string, args: string[], env: Record<string, string> = {}): ChildProcess & { output: () => string } {
  const child = spawn(ETCDBRCTL, args, { env: { ...process.env, ...env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  process.once('exit', () => child.kill('SIGKILL'));
  return Object.assign(child, { output: () => out });
}

async function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

const cli = runCli;

/**
 * One round of writes: new keys, overwrites, a delete, a multi-key transaction, a range delete and
 * a binary key, so each delta carries every kind of event.
 */
async function writeRound(client: Etcd3, round: number): Promise<void> {
  for (let i = 0; i < 12; i++) await client.put(`/k/${(round * 5 + i) % 9}`).value(`r${round}-${i}`);
  await client.delete().key(`/k/${round % 9}`);
  await client
    .if(`/k/${(round + 1) % 9}`, 'Version', '>', 0)
    .then(client.put(`/t/${round}/a`).value('a'), client.put(`/t/${round}/b`).value(randomBytes(40)), client.delete().key(`/k/${(round + 2) % 9}`))
    .commit();
  await client.delete().prefix(`/t/${round - 1}/`);
  await client.put(Buffer.from([0, round, 255])).value(randomBytes(64));
}

async function headRevision(client: Etcd3): Promise<number> {
  return Number((await client.maintenance.status()).header.revision);
}

async function chainOf(root: string): Promise<Chain> {
  return restorableChain(await listSnapshots(new LocalStore(root)));
}

/** The snapshots in a folder, as gardener named them. */
function snapshotsIn(root: string): SnapshotRef[] {
  return readdirSync(join(root, 'v2')).map((f) => parseSnapshotName(`v2/${f}`) as SnapshotRef);
}

/** A one-member source etcd holding 20 keys, a client on it, and a work folder that is gardener's HOME. */
async function startSource(): Promise<{ cluster: TestCluster; source: Etcd3; work: string; store: ReturnType<typeof gardenerStore> }> {
  const cluster = await TestCluster.start(1);
  const source = new Etcd3({ hosts: cluster.endpoints, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  const work = mkdtempSync(join(tmpdir(), 'ebs-gardener-'));
  const store = gardenerStore(work);
  mkdirSync(store.root, { recursive: true });
  for (let i = 0; i < 20; i++) await source.put(`/base/${i}`).value(`b${i}`);
  return { cluster, source, work, store };
}

async function stopSource(cluster: TestCluster | undefined, source: Etcd3 | undefined, work: string | undefined): Promise<void> {
  source?.close();
  await cluster?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
}

/** Starts etcd on `<dir>/data` as member `name` and compares every key with the source at `revision`. */
async function assertRestored(dir: string, name: string, peerURL: string, source: Etcd3, revision: number, etcdBinary?: string): Promise<void> {
  const { etcd, client } = await startRestored(dir, name, peerURL, etcdBinary);
  try {
    assert.equal(await headRevision(client), revision, 'the restored member is not at the revision restored to');
    const want = await keyspaceAt(source, revision);
    assert.ok(want.length >= 20, `only ${want.length} keys to compare`);
    assert.deepEqual(await keyspaceAt(client, revision), want);
  } finally {
    client.close();
    await etcd.stop();
  }
}

describe('gardener writes (etcdbrctl server), we read', { skip, timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let source: Etcd3;
  let work: string;
  let store: ReturnType<typeof gardenerStore>;
  let chain: Chain;
  let finalRevision: number;
  /** A db of the source taken between two rounds of writes after the final full snapshot, with its revision. */
  let midDb: string;
  let midRevision: number;
  const { log } = capturingLogger('info');

  before(async () => {
    ({ cluster, source, work, store } = await startSource());
    // gardener's server, as etcd-druid runs it beside one member: it reads that member's etcd
    // config from ETCD_CONF and its name from POD_NAME. It becomes the backup leader of a
    // single-member cluster, takes a full snapshot at start and deltas every second; no scheduled
    // full snapshot or garbage collection runs while the test does.
    const m = cluster.members[0] as TestCluster['members'][number];
    const etcdConf = join(work, 'etcd.conf.yaml');
    writeFileSync(etcdConf, `name: ${m.name}\ndata-dir: ${m.dataDir}\ninitial-cluster: ${m.name}=${m.peerURL}\n`);
    const port = await freePort();
    const gardener = runEtcdbrctl(
      work,
      [
        'server',
        '--endpoints',
        cluster.endpoints.join(','),
        ...store.flags,
        '--delta-snapshot-period',
        '1s',
        '--schedule',
        '0 0 1 1 *',
        '--garbage-collection-period',
        '0s',
        '--compress-snapshots',
        '--compression-policy',
        'gzip',
        '--snapstore-temp-directory',
        join(work, 'tmp'),
        '--server-port',
        String(port),
        '--data-dir',
        m.dataDir,
      ],
      { ETCD_CONF: etcdConf, POD_NAME: m.name, POD_NAMESPACE: 'default' },
    );
    try {
      await eventually("gardener's full snapshot", async () => (await chainOf(store.root)).full, 60_000);
      for (let round = 1; round <= 5; round++) {
        await writeRound(source, round);
        await sleep(1_200);
        // What etcd-druid asks for before it scales a cluster down: a full snapshot named `.final`.
        if (round === 2) {
          const res = await fetch(`http://127.0.0.1:${port}/snapshot/full?final=true`);
          assert.equal(res.status, 200, await res.clone().text());
          const taken = (await res.json()) as { snapName: string; isFinal: boolean };
          assert.ok(taken.isFinal && taken.snapName.endsWith('.gz.final'), taken.snapName);
        }
        if (round === 4) {
          midDb = join(work, 'mid.db');
          midRevision = await headRevision(source);
          await cluster.etcdctl(['snapshot', 'save', midDb]);
          // The store as it is now, for `etcdbrctl compact` (no write runs while it is copied, so
          // gardener uploads nothing meanwhile).
          cpSync(store.root, join(work, 'compact', PREFIX), { recursive: true });
        }
      }
      finalRevision = await headRevision(source);
      chain = await eventually(
        "gardener's deltas reach the last write",
        async () => {
          const c = await chainOf(store.root);
          return c.lastRevision === finalRevision ? c : undefined;
        },
        30_000,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- etcdbrctl ---\n${gardener.output().slice(-3000)}`, { cause: err });
    } finally {
      gardener.kill('SIGTERM');
      await exited(gardener);
    }
    assert.ok(chain.links.length >= 2, `only ${chain.links.length} deltas`);
    assert.ok(chain.full?.final, `the chain starts at ${chain.full?.name}, not at the .final full snapshot`);
  });

  after(() => stopSource(cluster, source, work));

  it('snapshots list reads every object gardener wrote (gzip, .final) and its chain to the last revision', async () => {
    const r = await cli(['snapshots', 'list', '--store', store.url]);
    assert.equal(r.code, 0, r.stderr);
    const written = readdirSync(join(store.root, 'v2'));
    assert.ok(written.length >= 3);
    for (const f of written) {
      assert.match(f, /\.gz(\.final)?$/, `${f} is not gzip`);
      assert.ok(r.stdout.includes(`v2/${f}`), `${f} missing from the listing:\n${r.stdout}`);
    }
    const full = (chain.full as SnapshotRef).name.replace(/\./g, '\\.');
    assert.match(r.stdout, new RegExp(`latest chain: ${full} \\+ ${chain.links.length} deltas, restores to revision ${finalRevision} \\(contiguous\\)`));
  });

  it("restore (CLI, with exactly etcdutl snapshot restore's flags and --store) restores every key, value, create and mod revision and version at gardener's last revision", async () => {
    const dir = join(work, 'cli-restore');
    const peer = `http://127.0.0.1:${await freePort()}`;
    const r = await cli([
      'restore',
      '--name',
      'r1',
      '--data-dir',
      join(dir, 'data'),
      '--initial-cluster',
      `r1=${peer}`,
      '--initial-cluster-token',
      'restored',
      '--initial-advertise-peer-urls',
      peer,
      '--store',
      store.url,
      '--log-level',
      'warn',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as RestoreResult;
    assert.equal(result.revision, finalRevision);
    assert.equal(result.deltasApplied, chain.links.length);
    await assertRestored(dir, 'r1', peer, source, finalRevision);
  });

  // gardener #1044 as its snapshotter makes it: the full snapshot named after a revision read before
  // the snapshot, its first delta starting right after that name. Made here by renaming gardener's
  // own objects, since the race it comes from is a matter of microseconds.
  const fault1044 = (dir: string, withDeltas: boolean): { dbRevision: number; named: number } => {
    const root = join(work, dir);
    cpSync(store.root, root, { recursive: true });
    const full = chain.full as SnapshotRef;
    const named = full.lastRevision - 3;
    const rename = (from: SnapshotRef, start: number, last: number): void => {
      const to = from.name.replace(/-(\d+)-(\d+)-/, `-${String(start).padStart(8, '0')}-${String(last).padStart(8, '0')}-`);
      renameSync(join(root, ...from.name.split('/')), join(root, ...to.split('/')));
    };
    rename(full, 0, named);
    const first = chain.links[0]?.delta as SnapshotRef;
    if (withDeltas) rename(first, named + 1, first.lastRevision);
    else for (const s of snapshotsIn(root)) if (s.kind === 'delta') rmSync(join(root, ...s.name.split('/')));
    return { dbRevision: full.lastRevision, named };
  };

  const restoreFrom = async (root: string, dir: string): Promise<{ result: RestoreResult; peer: string }> => {
    const peer = `http://127.0.0.1:${await freePort()}`;
    const result = await restore({
      store: new LocalStore(join(work, root)),
      dataDir: join(dir, 'data'),
      name: 'r1',
      initialCluster: `r1=${peer}`,
      initialClusterToken: 'restored',
      initialAdvertisePeerUrls: [peer],
      log,
    });
    return { result, peer };
  };

  it('#1044, no delta after the full snapshot: restored to the revision inside its db, not the one in its name', async () => {
    const { dbRevision, named } = fault1044('store-1044-alone', false);
    const dir = join(work, 'restore-1044-alone');
    const { result, peer } = await restoreFrom('store-1044-alone', dir);
    assert.ok(result.fullSnapshot.includes(`-${String(named).padStart(8, '0')}-`));
    assert.equal(result.revision, dbRevision);
    await assertRestored(dir, 'r1', peer, source, dbRevision);
  });

  it("#1044, the first delta starting inside the full snapshot's db: only its later revisions apply", async () => {
    fault1044('store-1044-overlap', true);
    const dir = join(work, 'restore-1044-overlap');
    const { result, peer } = await restoreFrom('store-1044-overlap', dir);
    assert.equal(result.revision, finalRevision);
    await assertRestored(dir, 'r1', peer, source, finalRevision);
  });

  it("#1044, deltas inside the full snapshot's db and more after it: those inside drop out instead of looking corrupt", async () => {
    // A db taken two rounds after gardener's .final full snapshot, under that snapshot's name: the
    // deltas of those rounds lie inside it, as when writes outpace the snapshot.
    const root = join(work, 'store-1044-inside');
    cpSync(store.root, root, { recursive: true });
    const full = chain.full as SnapshotRef;
    writeFileSync(join(root, ...full.name.split('/')), gzipSync(readFileSync(midDb)));
    const inside = chain.links.filter((l) => l.delta.lastRevision <= midRevision).length;
    assert.ok(inside >= 1 && inside < chain.links.length, `the premise: ${inside} of ${chain.links.length} deltas end inside the db`);
    const dir = join(work, 'restore-1044-inside');
    const { result, peer } = await restoreFrom('store-1044-inside', dir);
    assert.equal(result.fullRevision, midRevision);
    assert.equal(result.revision, finalRevision);
    assert.ok(result.deltasApplied <= chain.links.length - inside);
    await assertRestored(dir, 'r1', peer, source, finalRevision);
  });

  it('deltas after a compaction: the full snapshot `etcdbrctl compact` uploads last starts the chain, the deltas beyond it follow', async () => {
    const root = join(work, 'compact', PREFIX);
    const before = new Set(readdirSync(join(root, 'v2')));
    const compactor = runEtcdbrctl(work, [
      'compact',
      '--storage-provider',
      'Local',
      '--store-container',
      'compact',
      '--store-prefix',
      PREFIX,
      '--data-dir',
      join(work, 'compact-data'),
      '--restoration-temp-snapshots-dir',
      join(work, 'compact-restoration.tmp'),
      '--snapstore-temp-directory',
      join(work, 'tmp'),
      '--embedded-etcd-quota-bytes',
      String(1 << 30),
    ]);
    assert.equal(await exited(compactor), 0, compactor.output().slice(-3000));
    const compacted = snapshotsIn(root).filter((s) => !before.has(s.name.slice('v2/'.length)));
    assert.equal(compacted.length, 1, `compact uploaded ${compacted.map((s) => s.name).join(', ')}`);
    const full = compacted[0] as SnapshotRef;
    assert.equal(full.kind, 'full');
    // The live snapshotter's deltas past the compacted revision, all uploaded before it.
    const beyond = chain.links.map((l) => l.delta).filter((d) => d.lastRevision > full.lastRevision);
    assert.ok(beyond.length >= 1 && beyond.every((d) => d.createdAt.getTime() <= full.createdAt.getTime()), 'the premise: deltas beyond the compacted snapshot, uploaded before it');
    for (const d of beyond) cpSync(join(store.root, ...d.name.split('/')), join(root, ...d.name.split('/')));

    const dir = join(work, 'restore-compacted');
    const { result, peer } = await restoreFrom(join('compact', PREFIX), dir);
    assert.equal(result.fullSnapshot, full.name);
    assert.equal(result.revision, finalRevision);
    await assertRestored(dir, 'r1', peer, source, finalRevision);
  });

  it("our initializer restores a member whose data dir is empty from gardener's backups", async () => {
    const root = join(work, 'store-initializer');
    cpSync(store.root, root, { recursive: true });
    const c = await ManagedCluster.define(['m1'], { store: `file://${root}` });
    const client = new Etcd3({ hosts: c.endpoints, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    try {
      const init = await c.up('m1');
      assert.equal(init.decision, 'restore', init.reason);
      assert.ok((await headRevision(client)) >= finalRevision);
      assert.deepEqual(await keyspaceAt(client, finalRevision), await keyspaceAt(source, finalRevision));
    } finally {
      client.close();
      await c.stop();
    }
  });
});

describe(
  'we write (our sidecar), gardener reads (etcdbrctl restore)',
  { skip: skip || (!existsSync(ETCD_35) && `etcd 3.5 is missing (${ETCD_35}), which gardener's restored data dir needs: npm run peers builds it with Go`), timeout: 300_000 },
  () => {
    let cluster: TestCluster;
    let source: Etcd3;
    let work: string;
    let store: ReturnType<typeof gardenerStore>;
    let chain: Chain;

    before(async () => {
      ({ cluster, source, work, store } = await startSource());
      // Over 4 MiB in the db before our full snapshot: its gzip is then several members (one per
      // MiB block, compressed in parallel), which gardener's reader must take as one stream.
      for (let i = 0; i < 48; i++) await source.put(`/bulk/${i}`).value(randomBytes(100 * 1024));
      const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '300ms', store: store.url });
      try {
        await eventually('our full snapshot', async () => (await chainOf(store.root)).full, 30_000);
        for (let round = 1; round <= 4; round++) {
          await writeRound(source, round);
          await sleep(400);
        }
        const last = await headRevision(source);
        chain = await eventually(
          'our deltas reach the last write',
          async () => {
            const c = await chainOf(store.root);
            return c.lastRevision === last ? c : undefined;
          },
          30_000,
        );
      } finally {
        await sidecar.close();
      }
      assert.ok(chain.links.length >= 2, `only ${chain.links.length} deltas`);
    });

    after(() => stopSource(cluster, source, work));

    it("etcdbrctl restore restores every key, value, create and mod revision and version at our chain's last revision", async () => {
      assert.ok(existsSync(join(store.root, '.ebs-meta')), 'the premise: our checksums are in the folder gardener walks');
      const full = readFileSync(join(store.root, ...(chain.full as SnapshotRef).name.split('/')));
      assert.ok(gzipMembers(full) >= 4, `the premise: our full snapshot is a multi-member gzip (${gzipMembers(full)} members)`);
      const dir = join(work, 'gardener-restore');
      const peer = `http://127.0.0.1:${await freePort()}`;
      const gardener = runEtcdbrctl(work, [
        'restore',
        ...store.flags,
        '--data-dir',
        join(dir, 'data'),
        '--restoration-temp-snapshots-dir',
        join(dir, 'restoration.tmp'),
        '--snapstore-temp-directory',
        join(work, 'tmp'),
        '--name',
        'r1',
        '--initial-cluster',
        `r1=${peer}`,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster-token',
        'restored',
        '--embedded-etcd-quota-bytes',
        String(1 << 30),
      ]);
      const code = await exited(gardener);
      assert.equal(code, 0, gardener.output().slice(-3000));
      // Every delta of the chain was applied, none of our other files taken for a snapshot.
      for (const link of chain.links) assert.ok(gardener.output().includes(link.delta.name.slice('v2/'.length)), `${link.delta.name} not applied`);
      assert.doesNotMatch(gardener.output(), /\.ebs-meta\/v2\//);
      await assertRestored(dir, 'r1', peer, source, chain.lastRevision, ETCD_35);
    });
  },
);
