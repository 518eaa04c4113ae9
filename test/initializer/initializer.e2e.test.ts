import assert from 'node:assert/strict';
import { cpSync, readdirSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { readHeartbeats } from '../../src/cluster/heartbeat.js';
import { restorableChain } from '../../src/snapshot/chain.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { eventually, sleep } from '../helpers/cluster.js';
import { ManagedCluster } from '../helpers/managed.js';
import { mulberry32 } from '../helpers/random.js';

// Issue 7's must-shows, end to end: real etcd processes started only with the config the sidecar
// serves at GET /config, after POST /initialize. The tests start processes and inject faults; every
// decision is the sidecars'.

const client = (c: ManagedCluster): Etcd3 => new Etcd3({ hosts: c.endpoints, defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }) });

async function writeKeys(c: ManagedCluster, prefix: string, n: number): Promise<number> {
  const etcd = client(c);
  try {
    for (let i = 0; i < n; i++) await etcd.put(`${prefix}/${i}`).value(`v${i}`);
    return Number((await etcd.get(`${prefix}/0`).exec()).header.revision);
  } finally {
    etcd.close();
  }
}

async function keysUnder(c: ManagedCluster, prefix: string, endpoint?: string): Promise<Record<string, string>> {
  const etcd = new Etcd3({ hosts: endpoint ? [endpoint] : c.endpoints, defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }) });
  try {
    return await etcd.getAll().prefix(prefix).strings();
  } finally {
    etcd.close();
  }
}

/** Waits until the backups reach the cluster's current revision: everything written is in the store. */
async function waitBackedUp(c: ManagedCluster): Promise<number> {
  const etcd = client(c);
  try {
    const revision = Number((await etcd.maintenance.status()).header.revision);
    const store = new LocalStore(c.storeDir);
    await eventually('backups reach the revision', async () => (restorableChain(await listSnapshots(store)).lastRevision >= revision ? true : undefined), 60_000, 500);
    return revision;
  } finally {
    etcd.close();
  }
}

/** Sidecars of members whose data is lost start first and must wait: nobody holds a quorum or the newest copy yet. */
async function othersWait(c: ManagedCluster, names: string[]): Promise<void> {
  for (const n of names) await c.startSidecar(n);
  for (const n of names) void fetch(`${c.member(n).apiURL}/initialize`, { method: 'POST' });
  await eventually(
    `${names.join(', ')} wait`,
    async () => {
      const states = await Promise.all(names.map((n) => c.initializeState(n)));
      return states.every((st) => st.decision === 'wait') ? true : undefined;
    },
    30_000,
  );
  // ...and say so in their heartbeats, which is what the restorer reads.
  await eventually(
    `${names.join(', ')} announce they wait`,
    async () => {
      const hbs = await readHeartbeats(new LocalStore(c.storeDir));
      return names.every((n) => hbs.some((h) => h.name === n && h.waiting?.dataLost === true)) ? true : undefined;
    },
    30_000,
  );
}

const expected = (prefix: string, n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}/${i}`, `v${i}`]));

describe('initializer: bootstrap 0 -> 3 with members arriving at random delays (seed 003)', { timeout: 400_000 }, () => {
  const runs = Number(process.env['EBS_BOOTSTRAP_RUNS'] ?? 3);
  // EBS_BOOTSTRAP_SEED replays a failed run: each run's seed is in its name.
  const baseSeed = Number(process.env['EBS_BOOTSTRAP_SEED'] ?? Date.now() % 1_000_000);
  for (let run = 1; run <= runs; run++) {
    const seed = baseSeed + run - 1;
    it(`run ${run}: three started voters, one cluster ID, nobody restored (seed ${seed})`, async () => {
      const random = mulberry32(seed);
      const c = await ManagedCluster.define(['m1', 'm2', 'm3']);
      try {
        // Two members come up at random within 0-10 s, the third only after the backup leader has
        // uploaded a full snapshot (the anchor's split brain: the late member restored from it).
        const delays = [random() * 10_000, random() * 10_000];
        const early = ['m1', 'm2', 'm3']
          .map((name) => ({ name, key: random() }))
          .sort((a, b) => a.key - b.key)
          .map((e) => e.name);
        const late = early.pop() as string;
        await Promise.all(
          early.map(async (name, i) => {
            await sleep(delays[i] ?? 0);
            await c.up(name);
          }),
        );
        const store = new LocalStore(c.storeDir);
        await eventually('a full snapshot in the store', async () => restorableChain(await listSnapshots(store)).full, 60_000, 500);
        await sleep(random() * 10_000);
        const init = await c.up(late);
        assert.notEqual(init.decision, 'restore', `${late} restored: ${init.reason}`);
        const ids = await c.waitVoters(3);
        assert.equal(ids.size, 1, `members report different clusters: ${[...ids].join(', ')}`);
        for (const m of c.members) {
          const log = readdirSync(m.dir).includes('sidecar.log') ? c.logs(m.name, 100_000) : '';
          assert.doesNotMatch(log, /"decision":"restore"/, `${m.name} decided to restore`);
        }
      } finally {
        await c.stop();
      }
    });
  }
});

describe('initializer: a running 3-member cluster and one member in trouble', { timeout: 400_000 }, () => {
  let c: ManagedCluster;
  after(async () => {
    await c?.stop();
  });

  it('brings the cluster up (bootstrap), backs it up', async () => {
    c = await ManagedCluster.define(['m1', 'm2', 'm3']);
    await Promise.all(['m1', 'm2', 'm3'].map((n) => c.up(n)));
    assert.equal((await c.waitVoters(3)).size, 1);
    await writeKeys(c, '/base', 50);
  });

  it('a wiped data dir: the member is replaced, rejoins and has every key', async () => {
    await c.down('m2');
    c.wipe('m2');
    const init = await c.up('m2');
    assert.equal(init.decision, 'replace', init.reason);
    await c.waitVoters(3, 90_000);
    await eventually(
      'm2 has the data',
      async () => {
        const kv = await keysUnder(c, '/base', c.member('m2').clientURL).catch(() => ({}));
        return Object.keys(kv).length === 50 ? kv : undefined;
      },
      30_000,
    );
  });

  it('seed 004: a data dir replaced by an older copy of itself is detected; the member is replaced and etcd never crash-loops', async () => {
    const m3 = c.member('m3');
    await c.killEtcd('m3');
    const copy = `${m3.dir}/data-old`;
    cpSync(m3.dataDir, copy, { recursive: true });
    // The etcd container restarts on its own data; the sidecar and its decision stay as they were.
    await c.startEtcd('m3');
    await writeKeys(c, '/later', 200);
    // m3's heartbeat must record its newer raft index before the old copy comes back.
    const now = (await c.endpointStatus('m3')).Status.raftIndex;
    const store = new LocalStore(c.storeDir);
    await eventually(
      "m3's heartbeat at its current raft index",
      async () => {
        const hb = (await readHeartbeats(store)).find((h) => h.name === 'm3');
        return hb?.raftIndex !== undefined && hb.raftIndex >= now ? hb : undefined;
      },
      30_000,
    );
    await c.down('m3');
    c.wipe('m3');
    cpSync(copy, m3.dataDir, { recursive: true });
    const init = await c.up('m3');
    assert.equal(init.decision, 'replace', init.reason);
    assert.match(init.reason ?? '', /back in time/);
    await c.waitVoters(3, 90_000);
    // The replaced member catches up from the leader; an etcd that crash-looped would not serve it.
    await eventually(
      'm3 serves every key written after the copy',
      async () => {
        const kv = await keysUnder(c, '/later', m3.clientURL).catch(() => ({}));
        return Object.keys(kv).length === 200 ? kv : undefined;
      },
      30_000,
    );
    assert.equal(m3.etcd?.running, true, `etcd of m3 exited:\n${c.logs('m3')}`);
  });

  it('a data dir from another cluster never joins with it', async () => {
    const other = await ManagedCluster.define(['m1']);
    try {
      await other.up('m1');
      await writeKeys(other, '/foreign', 5);
      await other.down('m1');
      await c.down('m1');
      c.wipe('m1');
      cpSync(other.member('m1').dataDir, c.member('m1').dataDir, { recursive: true });
      const init = await c.up('m1');
      assert.equal(init.decision, 'replace', init.reason);
      assert.match(init.reason ?? '', /belongs to cluster/);
      assert.equal((await c.waitVoters(3, 90_000)).size, 1);
      assert.deepEqual(await keysUnder(c, '/foreign', c.member('m1').clientURL), {});
    } finally {
      await other.stop();
    }
  });

  it('scale-up 3 -> 4: the new member joins as a learner and is promoted', async () => {
    await c.add('m4');
    const init = await c.up('m4');
    assert.equal(init.decision, 'join-as-learner', init.reason);
    await c.waitVoters(4, 90_000);
    const kv = await keysUnder(c, '/base', c.member('m4').clientURL);
    assert.equal(Object.keys(kv).length, 50);
  });
});

describe('initializer: restores when the data is gone', { timeout: 600_000 }, () => {
  for (const survivor of ['m1', 'm2', 'm3']) {
    it(`quorum loss with one survivor (${survivor}), every pod started again at once: the survivor recovers from its own copy, the others join; no config ever forces a new cluster; a restart in place keeps every member`, async () => {
      // Deltas off: the backups stop at the first full snapshot, so the survivor's copy is the
      // newest and the recovery starts from it (with deltas on, newer backups would win).
      const c = await ManagedCluster.define(['m1', 'm2', 'm3'], { 'delta-snapshot-period': '0' });
      const t0 = performance.now();
      try {
        await Promise.all(['m1', 'm2', 'm3'].map((n) => c.up(n)));
        await c.waitVoters(3);
        await writeKeys(c, '/kept', 100);
        // A follower learns that its last entries are committed with the next message, and etcd
        // writes that news to its WAL without a sync; a forced new cluster keeps only what the WAL
        // says is committed. One write after the payload carries that news for every payload key.
        const revision = await writeKeys(c, '/fence', 1);
        await writeKeys(c, '/fence-sync', 1);
        await eventually(
          `${survivor} applied every write`,
          async () => {
            const out = JSON.parse(await c.etcdctl(['endpoint', 'status', '-w', 'json'], [c.member(survivor).clientURL])) as { Status: { header: { revision: number } } }[];
            return (out[0]?.Status.header.revision ?? 0) >= revision ? true : undefined;
          },
          30_000,
        );
        for (const n of ['m1', 'm2', 'm3']) await c.down(n);
        const wiped = ['m1', 'm2', 'm3'].filter((n) => n !== survivor);
        for (const n of wiped) c.wipe(n);
        const t1 = performance.now();
        const verdicts = await Promise.all(['m1', 'm2', 'm3'].map((n) => c.up(n)));
        const of = (n: string): { decision?: string; reason?: string } => verdicts[['m1', 'm2', 'm3'].indexOf(n)] ?? {};
        assert.equal(of(survivor).decision, 'restore', of(survivor).reason);
        for (const n of wiped) assert.equal(of(n).decision, 'join-as-learner', of(n).reason);
        assert.equal((await c.waitVoters(3, 120_000)).size, 1);
        console.log(`# quorum loss, survivor ${survivor}: recovered to 3 voters in ${Math.round(performance.now() - t1)} ms after the pods started`);
        assert.deepEqual(await keysUnder(c, '/kept'), expected('/kept', 100));
        for (const n of ['m1', 'm2', 'm3']) assert.doesNotMatch(await (await fetch(`${c.member(n).apiURL}/config`)).text(), /force-new-cluster/);
        // A restart of the survivor's etcd and sidecar: it uses its data and stays a member.
        await c.down(survivor);
        assert.equal((await c.up(survivor)).decision, 'use-existing');
        assert.equal((await c.waitVoters(3, 60_000)).size, 1);
        assert.deepEqual(await keysUnder(c, '/kept'), expected('/kept', 100));
      } finally {
        if (process.env.EBS_DEBUG)
          for (const n of ['m1', 'm2', 'm3'])
            for (const l of c
              .logs(n, 400_000)
              .split('\n')
              .filter((x) => /initializer decided|recovered|restored|heartbeat/.test(x)))
              console.log(`# ${n} ${l.slice(0, 400)}`);
        await c.stop();
        console.log(`# quorum loss, survivor ${survivor}: test took ${Math.round(performance.now() - t0)} ms`);
      }
    });
  }

  it('single member, data dir lost: restored from the backups up to the last delta', async () => {
    const c = await ManagedCluster.define(['m1']);
    try {
      const init = await c.up('m1');
      assert.equal(init.decision, 'bootstrap', init.reason);
      await writeKeys(c, '/single', 300);
      await waitBackedUp(c);
      await c.down('m1');
      c.wipe('m1');
      const again = await c.up('m1');
      assert.equal(again.decision, 'restore', again.reason);
      assert.deepEqual(await keysUnder(c, '/single'), expected('/single', 300));
      // And a plain restart afterwards uses the restored data (no restore loop).
      await c.down('m1');
      const third = await c.up('m1');
      assert.equal(third.decision, 'use-existing', third.reason);
    } finally {
      await c.stop();
    }
  });

  it('three members, every data dir lost: only the preferred restorer restores from the backups, the others wait, join as learners and are promoted', async () => {
    const c = await ManagedCluster.define(['m1', 'm2', 'm3']);
    try {
      await Promise.all(['m1', 'm2', 'm3'].map((n) => c.up(n)));
      await c.waitVoters(3);
      await writeKeys(c, '/quorum', 200);
      await waitBackedUp(c);
      for (const n of ['m1', 'm2', 'm3']) await c.down(n);
      for (const n of ['m1', 'm2', 'm3']) c.wipe(n);
      // The others first: they must wait, not bootstrap or restore.
      await othersWait(c, ['m2', 'm3']);
      const [i1, i2, i3] = await Promise.all([c.up('m1'), c.up('m2'), c.up('m3')]);
      assert.equal(i1?.decision, 'restore', i1?.reason);
      assert.equal(i2?.decision, 'join-as-learner', i2?.reason);
      assert.equal(i3?.decision, 'join-as-learner', i3?.reason);
      assert.equal((await c.waitVoters(3, 120_000)).size, 1);
      assert.deepEqual(await keysUnder(c, '/quorum'), expected('/quorum', 200));
      // The restored cluster has a new ID: its backups start a new chain, and it restores too.
      await writeKeys(c, '/after', 20);
      await waitBackedUp(c);
    } finally {
      await c.stop();
    }
  });
});
