/**
 * The backup and restore round trip on each etcd release line: 3.4 from PATH (Debian's), 3.5 and 3.6
 * from .peers/ (`npm run peers`). Each line's source cluster, restore tools, temporary etcd and
 * restored member are all of that line, as an operator running that release would have them.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { inspectDataDir } from '../../src/etcd/datadir.js';
import { EtcdProcess, etcdFromConfigFile } from '../../src/etcd/process.js';
import { etcdTools, etcdVersion, type EtcdTools } from '../../src/etcd/tools.js';
import { renderEtcdConfig } from '../../src/initializer/etcd-config.js';
import { restoreDrill } from '../../src/restore/drill.js';
import { restore } from '../../src/restore/index.js';
import type { Chain } from '../../src/snapshot/chain.js';
import type { LocalStore } from '../../src/snapstore/local.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { capturingLogger, startTestSidecar } from '../helpers/sidecar.js';
import { backupStore, currentChain } from '../helpers/snapshots.js';
import { keyspaceAt } from '../helpers/replay.js';
import { releaseDir } from '../helpers/etcd-release.js';

interface Line {
  minor: string;
  /** The folder of that release's etcd, etcdctl (and etcdutl), when this machine has it. */
  binDir?: string;
  version?: string;
  skip?: string;
}

async function versionIn(binDir: string): Promise<string | undefined> {
  try {
    return (await etcdVersion(etcdTools(binDir))).version;
  } catch {
    return undefined;
  }
}

async function releaseLines(): Promise<Line[]> {
  const lines: Line[] = [];
  for (const minor of ['3.4', '3.5', '3.6']) {
    const binDir = releaseDir(minor);
    const version = binDir ? await versionIn(binDir) : undefined;
    if (binDir && version?.startsWith(`${minor}.`)) lines.push({ minor, binDir, version });
    else lines.push({ minor, skip: minor === '3.4' ? `etcd in PATH is ${version ?? 'missing'}, not 3.4: run bash scripts/setup.sh` : `run npm run peers to build etcd ${minor}` });
  }
  return lines;
}

/**
 * Runs `fn` with stand-ins for etcd, etcdctl and etcdutl first in PATH that fail and leave a mark:
 * a restore that ran anything but the tools it was given would be caught, even where PATH's
 * release could have done the job.
 */
async function withDecoyPath<T>(work: string, fn: () => Promise<T>): Promise<{ result: T; decoysRun: string[] }> {
  const decoys = join(work, 'decoys');
  const marks = join(work, 'decoy-runs');
  mkdirSync(decoys, { recursive: true });
  for (const tool of ['etcd', 'etcdctl', 'etcdutl']) {
    writeFileSync(join(decoys, tool), `#!/bin/sh\necho ${tool} >> '${marks}'\nexit 1\n`);
    chmodSync(join(decoys, tool), 0o755);
  }
  const saved = process.env['PATH'];
  process.env['PATH'] = `${decoys}${delimiter}${saved ?? ''}`;
  try {
    const result = await fn();
    return { result, decoysRun: existsSync(marks) ? readFileSync(marks, 'utf8').trim().split('\n') : [] };
  } finally {
    process.env['PATH'] = saved;
  }
}

for (const line of await releaseLines()) {
  if (line.skip) {
    // A skipped test, not a skipped suite: the runner's closing count then shows it.
    it(`etcd ${line.minor}: backup, restore and start with that release's tools`, { skip: line.skip }, () => {});
    continue;
  }
  describe(`etcd ${line.minor} (${line.version ?? '?'}): backup, restore and start with that release's tools`, { timeout: 240_000 }, () => {
    let tools: EtcdTools;
    let cluster: TestCluster;
    let source: Etcd3;
    let store: LocalStore;
    let chain: Chain;
    let finalRevision: number;
    let work: string;
    const { log } = capturingLogger('info');

    before(async () => {
      assert.ok(line.binDir);
      tools = etcdTools(line.binDir);
      cluster = await TestCluster.start(1, { etcdBinary: tools.etcd });
      source = new Etcd3({ hosts: cluster.endpoints });
      work = mkdtempSync(join(tmpdir(), `ebs-etcd-${line.minor}-`));
      // In the full snapshot: keys written once, overwritten, deleted, and one under a lease.
      for (let i = 0; i < 40; i++) await source.put(`/a/${i}`).value(`a${i}`);
      for (let i = 0; i < 3; i++) await source.put('/a/0').value(`a0-v${i + 2}`);
      await source.delete().key('/a/5');
      await source.lease(600).put('/lease/long').value('l');

      const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '300ms' });
      store = backupStore(cluster);
      try {
        const full = await eventually('full snapshot', async () => (await currentChain(store)).full, 30_000);
        // In the deltas: overwrites of keys from the full snapshot, deletes of single keys and of a
        // prefix, a key deleted and written again, transactions, a binary key and value.
        for (let i = 0; i < 60; i++) await source.put(`/a/${i % 12}`).value(`a${i % 12}-d${i}`);
        await source.delete().key('/a/20');
        await source.delete().prefix('/a/3');
        await source.put('/a/5').value('back');
        for (let i = 0; i < 20; i++) await source.put(`/b/${i}`).value(Buffer.alloc(100 + i * 50, i));
        await source.if('/b/1', 'Version', '>', 0).then(source.put('/t/1').value('yes'), source.delete().key('/b/2'), source.put('/b/3').value('txn')).commit();
        await source.put(Buffer.from([0, 1, 2, 255])).value(Buffer.from([255, 0, 10]));
        for (let i = 0; i < 10; i++) await source.put('/hot').value(`${i}`);
        finalRevision = Number((await source.maintenance.status()).header.revision);
        chain = await eventually(
          'deltas up to the last write',
          async () => {
            const c = await currentChain(store);
            return c.lastRevision === finalRevision ? c : undefined;
          },
          30_000,
        );
        assert.ok(full.lastRevision < finalRevision, 'the full snapshot already holds every write: nothing is replayed');
      } finally {
        await sidecar.close();
      }
      assert.ok(chain.links.length >= 1, 'no delta');
    });

    after(async () => {
      source?.close();
      await cluster?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("the source runs that release; the restore replays the deltas and the member started on the result holds every key's value, create and mod revision and version", async () => {
      const status = await source.maintenance.status();
      assert.equal(status.version, line.version);
      if (line.minor !== '3.4') assert.ok(tools.etcdutl, `${line.binDir} has no etcdutl`);

      const dir = join(work, 'restored');
      const peerURL = `http://127.0.0.1:${await freePort()}`;
      const { result, decoysRun } = await withDecoyPath(work, () =>
        restore({ store, dataDir: join(dir, 'data'), name: 'r1', initialCluster: `r1=${peerURL}`, initialClusterToken: 'restored', initialAdvertisePeerUrls: [peerURL], log, etcdBinDir: line.binDir }),
      );
      assert.deepEqual(decoysRun, [], 'the restore ran a tool from PATH, not from --etcd-bin-dir');
      assert.equal(result.revision, finalRevision);
      assert.equal(result.deltasApplied, chain.links.length);

      const clientURL = `http://127.0.0.1:${await freePort()}`;
      const etcd = new EtcdProcess({
        name: 'r1',
        dataDir: join(dir, 'data'),
        listenClientUrls: [clientURL],
        advertiseClientUrls: [clientURL],
        listenPeerUrls: [peerURL],
        initialAdvertisePeerUrls: [peerURL],
        initialCluster: `r1=${peerURL}`,
        initialClusterState: 'new',
        initialClusterToken: 'restored',
        logFile: join(dir, 'etcd.log'),
        etcdBinary: tools.etcd,
      });
      etcd.start();
      const client = new Etcd3({ hosts: [clientURL] });
      try {
        const restored = await eventually('restored etcd up', async () => (await client.maintenance.status().catch(() => undefined)) ?? undefined, 30_000);
        assert.equal(restored.version, line.version);
        assert.equal(Number(restored.header.revision), finalRevision);
        const got = await keyspaceAt(client, finalRevision);
        const want = await keyspaceAt(source, finalRevision);
        assert.ok(want.length > 50, `only ${want.length} keys`);
        assert.deepEqual(got, want);
        // The history the deltas carried is there too, not only the last state.
        const mid = Math.floor((chain.full?.lastRevision ?? 0) + (finalRevision - (chain.full?.lastRevision ?? 0)) / 2);
        assert.deepEqual(await keyspaceAt(client, mid), await keyspaceAt(source, mid));
        const members = (await client.cluster.memberList({})).members;
        assert.deepEqual(
          members.map((m) => [m.name, m.peerURLs]),
          [['r1', [peerURL]]],
        );
      } finally {
        client.close();
        await etcd.stop();
      }
    });

    it("etcd starts from the config GET /config renders for that release, from a template that mixes every line's names", async () => {
      const { minor } = await etcdVersion(tools);
      const dir = join(work, 'rendered');
      mkdirSync(dir, { recursive: true });
      const [clientURL, peerURL] = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
      const template = {
        // Zap (3.4's default is capnslog) logs the settings etcd took, read below.
        logger: 'zap',
        'log-level': 'info',
        // 3.5's names: 3.6 has no v2 store and turned the switch into a feature gate.
        'enable-v2': false,
        'experimental-initial-corrupt-check': true,
        // 3.6's names: 3.4 and 3.5 read the experimental one; --max-learners is 3.6's alone.
        // Durations in etcd's config file are nanoseconds (Go's time.Duration); "5s" stops etcd.
        'watch-progress-notify-interval': 5_000_000_000,
        'max-learners': 1,
      };
      const { yaml, notes } = renderEtcdConfig(
        {
          name: 'c1',
          dataDir: join(dir, 'data'),
          initialClusterToken: 'rendered',
          initialAdvertisePeerUrls: [peerURL],
          advertiseClientUrls: [clientURL],
          listenPeerUrls: [peerURL],
          listenClientUrls: [clientURL],
        },
        { state: 'new', initialCluster: [{ name: 'c1', peerURL }] },
        template,
        { minor, maxLearners: 2 },
      );
      const renamed = notes.filter((n) => n.action === 'renamed').map((n) => n.key);
      assert.deepEqual(renamed, minor === '3.6' ? ['experimental-initial-corrupt-check'] : ['watch-progress-notify-interval']);
      writeFileSync(join(dir, 'etcd.yaml'), yaml);
      const etcd = etcdFromConfigFile('c1', join(dir, 'etcd.yaml'), join(dir, 'etcd.log'), tools.etcd);
      etcd.start();
      const client = new Etcd3({ hosts: [clientURL] });
      try {
        const status = await eventually('etcd from the rendered config up', async () => (await client.maintenance.status().catch(() => undefined)) ?? undefined, 30_000);
        assert.equal(status.version, line.version);
        // The corruption check is on: the switch (3.4, 3.5) or the gate (3.6) reached etcd.
        const settings =
          readFileSync(join(dir, 'etcd.log'), 'utf8')
            .split('\n')
            .find((l) => l.includes('"starting an etcd server"')) ?? '';
        if (minor === '3.6') {
          assert.match(settings, /"feature-gates":"InitialCorruptCheck=true"/);
          assert.match(settings, /"max-learners":2/);
        } else assert.match(settings, /"initial-corrupt-check":true/);
        // Learners: 3.6 takes the sidecar's --max-learners 2; 3.4 and 3.5 allow one, always.
        await client.cluster.memberAdd({ peerURLs: [`http://127.0.0.1:${await freePort()}`], isLearner: true });
        const second = client.cluster.memberAdd({ peerURLs: [`http://127.0.0.1:${await freePort()}`], isLearner: true });
        if (minor === '3.6') await second;
        else await assert.rejects(second, /too many learner members/);
        // 3.6 records its storage version in the db moments after it starts.
        if (minor === '3.6') await eventually('storage version written', async () => (readFileSync(join(dir, 'etcd.log'), 'utf8').includes('updated storage version') ? true : undefined), 15_000);
      } finally {
        client.close();
        await etcd.stop();
      }
      const inspected = await inspectDataDir(join(dir, 'data'));
      assert.equal(inspected.state, 'valid');
      assert.ok(inspected.writtenBy?.startsWith(`etcd ${minor} `), `${inspected.writtenBy} for etcd ${minor}`);
    });

    it('the restore drill passes with that release', async () => {
      const { result: report, decoysRun } = await withDecoyPath(work, () => restoreDrill({ store, scratchDir: join(work, 'drill'), log, etcdBinDir: line.binDir }));
      assert.deepEqual(decoysRun, []);
      assert.deepEqual(report.problems, []);
      assert.equal(report.pass, true);
      assert.equal(report.revision, finalRevision);
    });
  });
}
