import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { snapshotRestore } from '../../src/etcd/etcdctl.js';
import { EtcdProcess } from '../../src/etcd/process.js';
import { freeLoopbackPort, TemporaryEtcd } from '../../src/etcd/temporary.js';
import { fetchFullSnapshot } from '../../src/restore/fetch.js';
import { restoreDrill } from '../../src/restore/drill.js';
import { restore, RestoreError, type RestoreOptions, type RestoreResult } from '../../src/restore/index.js';
import type { Chain } from '../../src/snapshot/chain.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { metaFile } from '../../src/snapstore/local-meta.js';
import type { SnapStore } from '../../src/snapstore/types.js';
import { restoreMemberFlags, restoreResultOf, runCli } from '../helpers/cli.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { startRestored } from '../helpers/replay.js';
import { capturingLogger, startTestSidecar } from '../helpers/sidecar.js';
import { keyspaceAt } from '../helpers/replay.js';
import { backupStore, currentChain, readDelta } from '../helpers/snapshots.js';

/** A real store whose reads of deltas are slow, as over a poor network: stretches the replay past the leases' TTL. */
class SlowDeltaStore {
  constructor(
    private readonly inner: SnapStore,
    private readonly delayMs: number,
  ) {}
  wrap(): SnapStore {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop === 'get') {
          return async (name: string, opts?: { signal?: AbortSignal }) => {
            if (name.includes('/Incr-')) await new Promise((r) => setTimeout(r, this.delayMs));
            return target.get(name, opts);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}

describe('restore from a chain written by a live sidecar', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let source: Etcd3;
  let store: LocalStore;
  let chain: Chain;
  let finalRevision: number;
  let work: string;
  const keptLeaseKeys: string[] = [];
  const { log } = capturingLogger('info');

  const options = async (dir: string, extra: Partial<RestoreOptions> = {}): Promise<{ opts: RestoreOptions; peerURL: string }> => {
    const peerURL = `http://127.0.0.1:${await freePort()}`;
    return {
      peerURL,
      opts: { store, dataDir: join(dir, 'data'), name: 'r1', initialCluster: `r1=${peerURL}`, initialClusterToken: 'restored', initialAdvertisePeerUrls: [peerURL], log, ...extra },
    };
  };

  before(async () => {
    // The source accepts big transactions so one revision can exceed the temporary etcd's defaults.
    cluster = await TestCluster.start(1, { extraArgs: ['--max-txn-ops=2000', '--max-request-bytes=16777216'] });
    source = new Etcd3({ hosts: cluster.endpoints, grpcOptions: { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 } });
    work = mkdtempSync(join(tmpdir(), 'ebs-restore-'));
    for (let i = 0; i < 50; i++) await source.put(`/base/${i}`).value(randomBytes(32));
    // Short leases in the full snapshot: one kept alive by its owner all along, one abandoned later.
    const kept = source.lease(3);
    for (let i = 0; i < 3; i++) {
      await kept.put(`/lease/kept/${i}`).value(`k${i}`);
      keptLeaseKeys.push(`/lease/kept/${i}`);
    }
    const dropped = source.lease(2);
    for (let i = 0; i < 3; i++) await dropped.put(`/lease/dropped/${i}`).value(`d${i}`);
    const long = source.lease(600);
    await long.put('/lease/long').value('l');

    const sidecar = await startTestSidecar(cluster, 'm1', { 'snapshot-leader': 'always', 'delta-snapshot-period': '300ms' });
    store = backupStore(cluster);
    try {
      await eventually('full snapshot', async () => (await currentChain(store)).full, 30_000);
      // Its owner stops renewing: the source expires it, and the deletes land in a delta.
      dropped.release();
      for (let i = 0; i < 200; i++) {
        await source.put(`/k/${i % 40}`).value(randomBytes(1 + (i % 300)));
        if (i % 25 === 0) await source.delete().key(`/k/${(i + 7) % 40}`);
      }
      await source.put(Buffer.from([0, 1, 2, 255])).value(Buffer.from([255, 0, 10]));
      await source.delete().prefix('/base/1');
      await source.if('/k/4', 'Version', '>', 0).then(source.put('/t/a').value('1'), source.delete().key('/k/5')).commit();
      await long.put('/lease/long2').value('l2');
      const fresh = source.lease(600);
      await fresh.put('/lease/fresh').value('f');
      // One revision of 300 keys of 20KB: 6MB and 300 ops, past etcd's 1.5MiB and 128-op defaults.
      await source
        .if(Buffer.from([0]), 'Mod', '==', 0)
        .then(...Array.from({ length: 300 }, (_, i) => source.put(`/big/${i}`).value(randomBytes(20_000))))
        .commit();
      await eventually('the abandoned lease expired in the source', async () => ((await source.getAll().prefix('/lease/dropped/').keys()).length === 0 ? true : undefined), 30_000);
      for (let i = 0; i < 30; i++) await source.put(`/after/${i}`).value(`${i}`);
      finalRevision = Number((await source.maintenance.status()).header.revision);
      chain = await eventually(
        'deltas up to the last write',
        async () => {
          const c = await currentChain(store);
          return c.lastRevision === finalRevision ? c : undefined;
        },
        30_000,
      );
    } finally {
      await sidecar.close();
    }
    assert.ok(chain.links.length >= 3, `only ${chain.links.length} deltas`);
    // The premise of the big-transaction case: one revision past etcd's default limits.
    const perRevision = new Map<number, { ops: number; bytes: number }>();
    for (const link of chain.links) {
      for (const e of await readDelta(store, link.delta)) {
        const r = perRevision.get(e.kv.modRevision) ?? { ops: 0, bytes: 0 };
        perRevision.set(e.kv.modRevision, { ops: r.ops + 1, bytes: r.bytes + e.kv.key.length + e.kv.value.length });
      }
    }
    assert.ok(
      [...perRevision.values()].some((r) => r.ops > 128 && r.bytes > 1.5 * 1024 * 1024),
      'no revision exceeds 128 ops and 1.5MiB',
    );
  });

  after(async () => {
    source?.close();
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('restores every key, value, revision, version and lease of the source, with short leases outliving a long replay', async () => {
    const dir = join(work, 'roundtrip');
    // An old data dir the restore replaces, atomically, only at the end.
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data', 'old'), 'old data');
    // The replay must last longer than the short leases' TTL plus the election-timeout extension
    // etcd grants on promotion (3s + 1s): spread 20s of store latency over the deltas.
    const slow = new SlowDeltaStore(store, Math.ceil(20_000 / chain.links.length)).wrap();
    // No delta read ahead: each waits its whole latency in turn.
    const { opts, peerURL } = await options(dir, { store: slow, replaceExisting: true, prefetch: 0 });
    const progress: string[] = [];
    const result: RestoreResult = await restore({ ...opts, onProgress: (p) => progress.push(p.phase) });
    assert.ok(result.timings.replayMs > 13_000, `the replay took ${result.timings.replayMs}ms, not longer than the leases' TTL plus extension: the test proves nothing`);
    assert.equal(result.revision, finalRevision);
    assert.equal(result.fullSnapshot, chain.full?.name);
    assert.ok(progress.includes('replaying') && progress.at(-1) === 'done');
    assert.deepEqual(
      readdirSync(work).filter((n) => n.startsWith('roundtrip')),
      ['roundtrip'],
    );
    assert.ok(!existsSync(join(dir, 'data', 'old')) && !existsSync(join(dir, 'data.part')) && !existsSync(join(dir, 'data.old')));

    const { etcd, client } = await startRestored(dir, 'r1', peerURL);
    try {
      const leases = new Set((await client.leaseClient.leaseLeases()).leases.map((l) => l.ID));
      const restored = await keyspaceAt(client, finalRevision, { leases: true });
      assert.deepEqual(restored, await keyspaceAt(source, finalRevision, { leases: true }));
      const keys = restored.map((k) => Buffer.from(k.key, 'hex').toString());
      for (const k of keptLeaseKeys) assert.ok(keys.includes(k), `${k} (short lease kept alive in the source) is missing`);
      assert.ok(!keys.some((k) => k.startsWith('/lease/dropped/')), 'keys of the expired lease came back');
      assert.ok(keys.includes('/big/299') && keys.includes('/lease/fresh'));
      // Every lease a key names exists in the restored member.
      for (const k of restored) if (k.lease !== '0') assert.ok(leases.has(k.lease ?? ''), `lease ${k.lease} of ${k.key} is missing`);
      // The member carries the identity it was restored with, not the temporary etcd's.
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

  it("control: without renewals the temporary etcd revokes the full snapshot's short leases and moves the revision (anchor #1045)", async () => {
    // The premise of the lease test above: this is what the lease keeper prevents.
    const dir = join(work, 'control');
    mkdirSync(dir, { recursive: true });
    assert.ok(chain.full);
    const full = await fetchFullSnapshot(store, chain.full, join(dir, 'full.db'));
    const peerPort = await freeLoopbackPort();
    const peerURL = `http://127.0.0.1:${peerPort}`;
    await snapshotRestore({
      file: join(dir, 'full.db'),
      dataDir: join(dir, 'data'),
      name: 'control',
      initialCluster: `control=${peerURL}`,
      initialClusterToken: 'control',
      initialAdvertisePeerUrls: [peerURL],
    });
    const temp = await TemporaryEtcd.start({ dataDir: join(dir, 'data'), name: 'control', peerPort, logFile: join(dir, 'etcd.log'), log });
    try {
      assert.equal(await temp.revision(), full.revision);
      const moved = await eventually(
        'the lessor revokes an expired lease',
        async () => {
          const r = await temp.revision();
          return r > full.revision ? r : undefined;
        },
        60_000,
        500,
      );
      assert.ok(moved > full.revision);
    } finally {
      await temp.stop();
    }
  });

  it('restores to a revision in the middle of a delta: exactly the state at that revision', async () => {
    let target: number | undefined;
    for (const link of chain.links) {
      const revs = [...new Set((await readDelta(store, link.delta)).map((e) => e.kv.modRevision).filter((r) => r > link.skipThrough))];
      if (revs.length >= 3) {
        target = revs[1];
        break;
      }
    }
    assert.ok(target !== undefined, 'no delta with three revisions');
    const dir = join(work, 'pitr');
    const { opts, peerURL } = await options(dir, { toRevision: target });
    const result = await restore(opts);
    assert.equal(result.revision, target);
    const { etcd, client } = await startRestored(dir, 'r1', peerURL);
    try {
      const status = await client.maintenance.status();
      assert.equal(Number(status.header.revision), target);
      assert.deepEqual(await keyspaceAt(client, target, { leases: true }), await keyspaceAt(source, target, { leases: true }));
    } finally {
      client.close();
      await etcd.stop();
    }
  });

  it('restores to a time: the last revision written at or before it', async () => {
    const firstTime = new Map<number, number>();
    for (const link of chain.links) for (const e of await readDelta(store, link.delta)) if (!firstTime.has(e.kv.modRevision)) firstTime.set(e.kv.modRevision, Date.parse(e.time));
    const revs = [...firstTime.keys()].sort((a, b) => a - b);
    const pick = revs[Math.floor(revs.length / 2)] as number;
    const toTime = new Date(firstTime.get(pick) as number);
    const expected = Math.max(...revs.filter((r) => (firstTime.get(r) as number) <= toTime.getTime()));
    const { opts } = await options(join(work, 'pitr-time'), { toTime });
    const result = await restore(opts);
    assert.equal(result.revision, expected);
  });

  it('three members restored with one initial cluster and token start as one cluster with the configured identities', async () => {
    const dir = join(work, 'three');
    const names = ['n1', 'n2', 'n3'];
    const peers = await Promise.all(names.map(async () => `http://127.0.0.1:${await freePort()}`));
    const clients = await Promise.all(names.map(async () => `http://127.0.0.1:${await freePort()}`));
    const initialCluster = names.map((n, i) => `${n}=${peers[i]}`).join(',');
    for (const [i, name] of names.entries()) {
      const result = await restore({ store, dataDir: join(dir, name), name, initialCluster, initialClusterToken: 'three', initialAdvertisePeerUrls: [peers[i] as string], log });
      assert.equal(result.revision, finalRevision);
    }
    const members = names.map(
      (name, i) =>
        new EtcdProcess({
          name,
          dataDir: join(dir, name),
          listenClientUrls: [clients[i] as string],
          advertiseClientUrls: [clients[i] as string],
          listenPeerUrls: [peers[i] as string],
          initialAdvertisePeerUrls: [peers[i] as string],
          initialCluster,
          initialClusterState: 'new',
          initialClusterToken: 'three',
          logFile: join(dir, `${name}.log`),
          extraArgs: ['--election-timeout=5000', '--heartbeat-interval=100'],
        }),
    );
    for (const m of members) m.start();
    const client = new Etcd3({ hosts: clients, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
    try {
      await eventually(
        'the restored cluster has a leader',
        async () => {
          const s = await client.maintenance.status().catch(() => undefined);
          return s && s.leader !== '0' ? s : undefined;
        },
        60_000,
      );
      const list = (await client.cluster.memberList({})).members.map((m) => [m.name, m.peerURLs]).sort();
      assert.deepEqual(
        list,
        names.map((n, i) => [n, [peers[i]]]),
      );
      assert.deepEqual(await keyspaceAt(client, finalRevision, { leases: true }), await keyspaceAt(source, finalRevision, { leases: true }));
      // A write through the new cluster reaches every member: it is one cluster, not three.
      await client.put('/after-restore').value('x');
      for (const url of clients) {
        const one = new Etcd3({ hosts: [url] });
        try {
          assert.equal(await eventually(`member ${url} has the write`, async () => (await one.get('/after-restore').string()) ?? undefined, 20_000), 'x');
        } finally {
          one.close();
        }
      }
    } finally {
      client.close();
      await Promise.all(members.map((m) => m.stop()));
    }
  });

  it('the restore drill passes on the chain', async () => {
    const report = await restoreDrill({ store, scratchDir: join(work, 'drill'), log });
    assert.deepEqual(report.problems, []);
    assert.equal(report.pass, true);
    assert.equal(report.revision, finalRevision);
    assert.equal(report.keys, report.expectedKeys);
    assert.ok((report.keys ?? 0) > 300);
  });

  it('CLI: restore --to-revision prints the result; a second restore into the now full data dir is refused; snapshots verify passes', async () => {
    const dir = join(work, 'cli');
    const peer = `http://127.0.0.1:${await freePort()}`;
    const cli = runCli;
    const member = restoreMemberFlags(join(dir, 'data'), peer, `file://${cluster.dir}/backups`);
    const target = chain.full!.lastRevision + 1;
    const ok = await cli(['restore', ...member, '--to-revision', String(target)]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((restoreResultOf(ok) as RestoreResult).revision, target);
    const again = await cli(['restore', ...member]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /restore failed \(data_dir_not_empty\)/);
    const textfile = join(work, 'drill.prom');
    const drill = await cli(['snapshots', 'verify', '--store', `file://${cluster.dir}/backups`, '--restore-scratch-dir', join(work, 'cli-drill'), '--metrics-textfile', textfile]);
    assert.equal(drill.code, 0, drill.stdout + drill.stderr);
    assert.match(drill.stdout, new RegExp(`^PASS: .* restored to revision ${finalRevision} `, 'm'));
    const prom = readFileSync(textfile, 'utf8');
    assert.match(prom, /^etcd_backup_sidecar_restore_drill_success 1$/m);
    assert.match(prom, new RegExp(`^etcd_backup_sidecar_restore_drill_revision ${finalRevision}$`, 'm'));
  });

  it('a restore SIGKILLed while its temporary etcd runs leaves the old data dir; the next restore kills the orphan etcd and completes', async () => {
    const dir = join(work, 'killed');
    const scratch = join(dir, 'scratch');
    mkdirSync(join(dir, 'data'), { recursive: true });
    mkdirSync(scratch, { recursive: true });
    writeFileSync(join(dir, 'data', 'old'), 'old data');
    const { opts, peerURL } = await options(dir, { replaceExisting: true, scratchDir: scratch });
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
    const args = [
      '--name',
      'r1',
      '--data-dir',
      opts.dataDir,
      '--initial-cluster',
      `r1=${peerURL}`,
      '--advertise-client-urls',
      'http://127.0.0.1:2379',
      '--store',
      `file://${cluster.dir}/backups`,
      '--restore-scratch-dir',
      scratch,
      '--replace-existing',
      '--log-level',
      'warn',
    ];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'restore', ...args], { env, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const etcdPid = await eventually(
      'the temporary etcd of the CLI restore',
      async () => {
        for (const n of readdirSync(scratch)) {
          const owner = JSON.parse(readFileSync(join(scratch, n, 'owner.json'), 'utf8')) as { etcdPid?: number };
          if (owner.etcdPid) return owner.etcdPid;
        }
        return undefined;
      },
      60_000,
      20,
    );
    child.kill('SIGKILL');
    await exited;
    assert.deepEqual(readdirSync(join(dir, 'data')), ['old'], 'the old data dir was touched');
    assert.equal(readFileSync(join(dir, 'data', 'old'), 'utf8'), 'old data');
    assert.doesNotThrow(() => process.kill(etcdPid, 0), 'the orphaned temporary etcd should still be running: the premise of this test');
    try {
      const result = await restore(opts);
      assert.equal(result.revision, finalRevision);
      await eventually(
        'the orphan etcd is gone',
        async () => {
          try {
            process.kill(etcdPid, 0);
            return undefined;
          } catch {
            return true;
          }
        },
        10_000,
      );
      assert.deepEqual(readdirSync(scratch), [], 'scratch dirs were left behind');
      assert.ok(!existsSync(join(dir, 'data', 'old')) && existsSync(join(dir, 'data', 'member')));
    } finally {
      try {
        process.kill(etcdPid, 'SIGKILL');
      } catch {
        // already gone, as it should be
      }
    }
  });

  /** A copy of the backups to damage, and a data dir with old data that must survive the refusal. */
  const damaged = async (label: string, harm: (root: string, copy: LocalStore) => Promise<void> | void): Promise<{ err: unknown; dataDir: string }> => {
    const root = join(work, `store-${label}`);
    cpSync(join(cluster.dir, 'backups'), root, { recursive: true });
    const copy = new LocalStore(root);
    await harm(root, copy);
    const dir = join(work, label);
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data', 'old'), 'old data');
    const { opts } = await options(dir, { store: copy, replaceExisting: true });
    const err = await restore(opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { err, dataDir: join(dir, 'data') };
  };

  const assertRefused = (err: unknown, dataDir: string, code: string, pattern: RegExp): void => {
    assert.ok(err instanceof RestoreError, `expected a RestoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    assert.deepEqual(readdirSync(dataDir), ['old'], 'the existing data dir was touched');
    assert.equal(readFileSync(join(dataDir, 'old'), 'utf8'), 'old data');
    assert.ok(!existsSync(`${dataDir}.part`) && !existsSync(`${dataDir}.old`), 'a half-written data dir was left behind');
  };

  it('refuses a corrupted delta (bad sha256) and leaves the data dir untouched', async () => {
    const victim = chain.links[Math.floor(chain.links.length / 2)]?.delta;
    assert.ok(victim);
    const { err, dataDir } = await damaged('corrupt', (root) => {
      const file = join(root, ...victim.name.split('/'));
      const bytes = readFileSync(file);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] as number) ^ 0xff;
      writeFileSync(file, bytes);
    });
    assertRefused(err, dataDir, 'corrupt', new RegExp(victim.name.replace(/[.]/g, '\\.')));
  });

  it('refuses a chain with a delta missing in the middle', async () => {
    const victim = chain.links[1]?.delta;
    assert.ok(victim);
    const { err, dataDir } = await damaged('gap', (_root, copy) => copy.delete(victim.name));
    assertRefused(err, dataDir, 'gap', /missing/);
  });

  it('refuses a chain of another cluster, and a chain whose objects name two clusters', async () => {
    const dir = join(work, 'foreign');
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data', 'old'), 'old data');
    const { opts } = await options(dir, { replaceExisting: true, expectClusterId: 'deadbeef' });
    const err = await restore(opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    assertRefused(err, join(dir, 'data'), 'foreign_cluster', /deadbeef/);

    const victim = chain.links[0]?.delta;
    assert.ok(victim);
    const mixed = await damaged('mixed', (root) => {
      const meta = join(root, metaFile(victim.name));
      const record = JSON.parse(readFileSync(meta, 'utf8')) as { metadata: Record<string, string> };
      record.metadata['ebs-cluster-id'] = 'abc123';
      writeFileSync(meta, JSON.stringify(record));
    });
    assertRefused(mixed.err, mixed.dataDir, 'foreign_cluster', /abc123/);
  });

  it('refuses a data dir that exists and is not empty', async () => {
    const dir = join(work, 'notempty');
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data', 'old'), 'old data');
    const { opts } = await options(dir);
    const err = await restore(opts).then(
      () => undefined,
      (e: unknown) => e,
    );
    assertRefused(err, join(dir, 'data'), 'data_dir_not_empty', /not empty/);
  });
});
