import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import type { Role } from '../../src/cluster/role.js';
import type { StatusBody } from '../../src/server/schemas.js';
import { eventually, sleep, TestCluster } from '../helpers/cluster.js';
import { assertChainRestores } from '../helpers/replay.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from '../../src/etcd/client.js';
import { s3Fixture, type StoreFixture } from '../helpers/store-fixtures.js';
import { capturingLogger, getJson, sidecarConfig, spawnSidecar, startTestSidecar, type SidecarProcess } from '../helpers/sidecar.js';
import { assertChainEvents, backupStore, currentChain } from '../helpers/snapshots.js';

// Issue 6: the sidecar beside the etcd raft leader is the backup leader, every fault hands the
// backups over within seconds, and the chain across a handoff has no missing revision.

const CHECK_PERIOD_MS = 1_000;
const LOST_AFTER = 3;
const FLAGS = {
  'leader-check-period': `${CHECK_PERIOD_MS}ms`,
  'leader-lost-after': String(LOST_AFTER),
  'heartbeat-period': '1s',
  'heartbeat-ttl': '4s',
  'delta-snapshot-period': '500ms',
  'health-check-period': '5s',
};
// The must-show bound for a handoff; polls give up there.
const HANDOFF_MS = 15_000;

type InProcess = Awaited<ReturnType<typeof startTestSidecar>>;

/** Writes one key through any member that answers and returns the revision it created. */
async function write(client: Etcd3, key: string): Promise<number> {
  return eventually(`put ${key}`, async () => Number((await client.put(key).value(key).exec()).header.revision), 20_000, 200);
}

function leadersOf(sidecars: Map<string, InProcess>): string[] {
  return [...sidecars].filter(([, s]) => s.cluster.role === 'leader').map(([n]) => n);
}

function anyClientOf(sidecars: Map<string, InProcess>, except: string[] = []): Etcd3 {
  return [...sidecars].find(([n]) => !except.includes(n))?.[1].etcd.etcd as Etcd3;
}

function uploadedBy(s: InProcess | undefined): number {
  return s?.snapshotter?.deltaState?.uploadedRevision ?? 0;
}

describe('backup-leader election with three sidecars beside a real 3-member cluster', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  const sidecars = new Map<string, InProcess>();
  let leader: string;

  before(async () => {
    cluster = await TestCluster.start(3);
    for (const m of cluster.members) sidecars.set(m.name, await startTestSidecar(cluster, m.name, FLAGS));
  });
  after(async () => {
    for (const m of cluster?.members ?? []) if (m.process.running) cluster.thaw(m.name);
    await Promise.all([...sidecars.values()].map((s) => s.close()));
    await cluster?.stop();
  });

  const anyClient = (except: string[] = []): Etcd3 => anyClientOf(sidecars, except);

  it('healthy for 60 s: exactly one backup leader, beside the raft leader, at every sample; no role change', async () => {
    leader = await eventually(
      'every sidecar has a role',
      async () => {
        const leaders = leadersOf(sidecars);
        const settled = [...sidecars.values()].every((s) => s.cluster.role !== 'unknown');
        return settled && leaders.length === 1 ? leaders[0] : undefined;
      },
      30_000,
    );
    assert.equal(leader, await cluster.leader());
    const changesAtStart = new Map([...sidecars].map(([n, s]) => [n, s.cluster.roles.changes]));
    const client = anyClient();
    let samples = 0;
    let last = 0;
    for (const until = Date.now() + 60_000; Date.now() < until;) {
      assert.deepEqual(leadersOf(sidecars), [leader], `sample ${samples}`);
      for (const [n, s] of sidecars) if (n !== leader) assert.equal(s.cluster.role, 'follower', `${n} at sample ${samples}`);
      assert.equal(sidecars.get(leader)?.snapshotter !== undefined, true);
      for (const [n, s] of sidecars) if (n !== leader) assert.equal(s.snapshotter, undefined, `${n} snapshots`);
      if (samples % 2 === 0) last = await write(client, `healthy/${samples}`);
      samples++;
      await sleep(250);
    }
    for (const [n, s] of sidecars) assert.equal(s.cluster.roles.changes, changesAtStart.get(n), `${n} changed role`);
    assert.ok(samples > 100, `${samples} samples`);
    await eventually('deltas uploaded through the last write', async () => (uploadedBy(sidecars.get(leader)) >= last ? true : undefined), 20_000);
  });

  it('/status shows the role, the backup leader and every heartbeat; a follower forwards snapshot requests to the leader', async () => {
    const follower = [...sidecars.keys()].find((n) => n !== leader) as string;
    const f = sidecars.get(follower) as InProcess;
    const { body } = await getJson<StatusBody>(`${f.url}/status`);
    assert.equal(body.role, 'follower');
    assert.equal(body.election?.backupLeader?.name, leader);
    assert.equal(body.election?.backupLeader?.apiURL, sidecars.get(leader)?.url);
    assert.deepEqual(body.election?.heartbeats.map((h) => h.name).sort(), ['m1', 'm2', 'm3']);
    for (const hb of body.election?.heartbeats ?? []) {
      assert.equal(hb.etcdUp, true, hb.name);
      assert.equal(hb.stale, false, `${hb.name} is ${hb.ageSeconds} s old`);
      assert.equal(hb.role, hb.name === leader ? 'leader' : 'follower');
      assert.match(hb.memberId ?? '', /^[0-9a-f]+$/);
      assert.ok((hb.revision ?? 0) > 0);
    }
    const lead = await getJson<StatusBody>(`${sidecars.get(leader)?.url}/status`);
    assert.equal(lead.body.role, 'leader');
    assert.equal(lead.body.backup.takesSnapshots, true);

    const rev = await write(anyClient(), 'forwarded');
    const res = await fetch(`${f.url}/snapshot/delta`, { method: 'POST' });
    assert.equal(res.headers.get('x-ebs-forwarded-to'), leader);
    assert.ok(res.status === 201 || res.status === 200, `status ${res.status}`);
    await eventually('forwarded delta reaches the write', async () => (uploadedBy(sidecars.get(leader)) >= rev ? true : undefined), 10_000);
    const latest = await fetch(`${f.url}/snapshot/latest`);
    assert.equal(latest.status, 200);
    assert.equal(latest.headers.get('x-ebs-forwarded-to'), leader);

    const metrics = await (await fetch(`${f.url}/metrics`)).text();
    assert.match(metrics, /etcd_backup_sidecar_backup_role\{role="follower"\} 1/);
    assert.match(metrics, /etcd_backup_sidecar_backup_role_changes_total\{role="follower"\} 1/);
    assert.match(metrics, new RegExp(`etcd_backup_sidecar_heartbeat_age_seconds\\{member="${leader}"\\} \\d`));
  });

  it("one follower's etcd frozen: the leader keeps its role and deltas keep flowing", async () => {
    const frozen = [...sidecars.keys()].find((n) => n !== leader) as string;
    const changes = sidecars.get(leader)?.cluster.roles.changes;
    cluster.freeze(frozen);
    try {
      const client = anyClient([frozen]);
      for (let i = 0; i < 8; i++) {
        const rev = await write(client, `follower-frozen/${i}`);
        await eventually(`delta through revision ${rev}`, async () => (uploadedBy(sidecars.get(leader)) >= rev ? true : undefined), 10_000);
        assert.deepEqual(leadersOf(sidecars), [leader]);
        await sleep(500);
      }
      assert.equal(sidecars.get(leader)?.cluster.roles.changes, changes, 'the leader changed role');
    } finally {
      cluster.thaw(frozen);
    }
    await cluster.waitHealthy();
  });

  it("the leader's etcd frozen: another sidecar leads within 15 s, deltas flow, the old one follows after thaw, the chain restores", async (t) => {
    const old = leader;
    const before = await write(anyClient(), 'handoff/before');
    await eventually('uploaded before the freeze', async () => (uploadedBy(sidecars.get(old)) >= before ? true : undefined), 10_000);
    cluster.freeze(old);
    const frozenAt = performance.now();
    let next: string;
    try {
      next = await eventually(
        'a new backup leader',
        async () => {
          const l = leadersOf(sidecars).filter((n) => n !== old);
          return l.length === 1 ? l[0] : undefined;
        },
        HANDOFF_MS,
        100,
      );
      t.diagnostic(`new backup leader ${next} ${Math.round(performance.now() - frozenAt)} ms after the freeze`);
      const survivors = anyClient([old]);
      let rev = 0;
      for (let i = 0; i < 5; i++) rev = await write(survivors, `handoff/during/${i}`);
      await eventually(`the new leader's deltas reach revision ${rev}`, async () => (uploadedBy(sidecars.get(next)) >= rev ? true : undefined), HANDOFF_MS);
      // The frozen one steps down at its own pace (it is frozen, not its sidecar).
      await eventually('the frozen member sidecar gives up the role', async () => (sidecars.get(old)?.cluster.role !== 'leader' ? true : undefined), HANDOFF_MS);
    } finally {
      cluster.thaw(old);
    }
    await eventually('the old leader follows after thaw', async () => (sidecars.get(old)?.cluster.role === 'follower' ? true : undefined), 20_000);
    assert.deepEqual(leadersOf(sidecars), [next]);
    assert.equal(sidecars.get(old)?.snapshotter, undefined);
    leader = next;

    const after = await write(anyClient(), 'handoff/after');
    await eventually('uploaded after the thaw', async () => (uploadedBy(sidecars.get(next)) >= after ? true : undefined), 10_000);
    const store = backupStore(cluster);
    const chain = await currentChain(store);
    assert.ok(chain.contiguous, `gaps: ${JSON.stringify(chain.gaps)}`);
    assert.ok(chain.full && chain.full.lastRevision < before, 'the chain starts before the handoff');
    assert.ok(chain.lastRevision >= after);
    const writers = new Set(await Promise.all(chain.links.map(async (l) => (await store.head(l.delta.name))?.metadata['ebs-member'])));
    assert.ok(writers.has(old) && writers.has(next), `the chain's deltas were written by ${[...writers].join(', ')}, not by both ${old} and ${next}`);
    await assertChainEvents(store, chain);
    await assertChainRestores(store, chain, anyClient());
  });

  it(`a member without quorum (the other two frozen): its sidecar stops snapshotting within --leader-lost-after checks`, async (t) => {
    const lonely = leader;
    const others = [...sidecars.keys()].filter((n) => n !== lonely);
    const s = sidecars.get(lonely) as InProcess;
    const checksAtFreeze = s.cluster.roles.checks;
    for (const n of others) cluster.freeze(n);
    try {
      await eventually('the lonely sidecar steps down', async () => (s.cluster.role === 'unknown' ? true : undefined), HANDOFF_MS, 100);
      // Checks it took from the freeze until it stepped down: etcd's own CheckQuorum may make the
      // member drop its leadership first, but never more than lostAfter unconfirmed checks are needed.
      const took = s.cluster.roles.checks - checksAtFreeze;
      t.diagnostic(`stepped down after ${took} checks`);
      assert.ok(took <= LOST_AFTER + 1, `stepped down after ${took} checks`);
      assert.equal(s.snapshotter, undefined, 'still snapshotting');
      assert.match(s.cluster.roles.current.reason, /without a confirmed answer/);
      const { body } = await getJson<StatusBody>(`${s.url}/status`);
      assert.equal(body.role, 'unknown');
      assert.equal(body.backup.takesSnapshots, false);
      const res = await fetch(`${s.url}/snapshot/full`, { method: 'POST' });
      assert.equal(res.status, 503);
      const err = (await res.json()) as { error: string; message: string };
      assert.equal(err.error, 'not_backup_leader');
      assert.match(err.message, /not the backup leader \(role unknown/);
    } finally {
      for (const n of others) cluster.thaw(n);
    }
    await cluster.waitHealthy();
    await eventually('one leader again', async () => (leadersOf(sidecars).length === 1 ? true : undefined), 20_000);
  });

  it("a learner's sidecar promotes its member through the leader's endpoint once it is in sync", async () => {
    await cluster.addLearner('m4');
    const learner = await startTestSidecar(cluster, 'm4', FLAGS);
    try {
      await eventually(
        'm4 promoted',
        async () => {
          const out = await cluster.etcdctl(['member', 'list', '-w', 'json']);
          return /"name":"m4"/.test(out) && !/"name":"m4"[^}]*"isLearner":true/.test(out) ? true : undefined;
        },
        60_000,
        500,
      );
      assert.ok(
        learner.lines.some((l) => l.includes('learner promoted to voting member')),
        'the sidecar did not promote it',
      );
      assert.equal(learner.cluster.role, 'follower');
      assert.deepEqual(leadersOf(sidecars).length, 1);
    } finally {
      await learner.close();
    }
  });
});

describe("the backup leader's sidecar killed (SIGKILL)", { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  const procs = new Map<string, SidecarProcess>();
  let etcd: EtcdClient | undefined;

  before(async () => {
    cluster = await TestCluster.start(3);
    await Promise.all(cluster.members.map(async (m) => procs.set(m.name, await spawnSidecar(cluster, m.name, FLAGS))));
  });
  after(async () => {
    for (const p of procs.values()) p.child.kill('SIGKILL');
    etcd?.close();
    await cluster?.stop();
  });

  const roleOf = async (name: string): Promise<Role | undefined> => (await getJson<StatusBody>(`${procs.get(name)?.url}/status`).catch(() => undefined))?.body.role;
  const uploadedOf = async (name: string): Promise<number> => (await getJson<StatusBody>(`${procs.get(name)?.url}/status`)).body.backup.uploadedRevision ?? 0;

  it('another sidecar stands in within 15 s and the chain has no missing revision', async (t) => {
    const raftLeader = await cluster.leader();
    await eventually('the raft leader sidecar leads', async () => ((await roleOf(raftLeader)) === 'leader' ? true : undefined), 60_000);
    etcd = await createEtcdClient(etcdAccessFromConfig(sidecarConfig(cluster, raftLeader)), capturingLogger().log);
    const client = etcd.etcd;
    const before = await write(client, 'kill/before');
    await eventually('uploaded before the kill', async () => ((await uploadedOf(raftLeader)) >= before ? true : undefined), 20_000);

    const victim = procs.get(raftLeader) as SidecarProcess;
    victim.child.kill('SIGKILL');
    await victim.exited;
    const killedAt = performance.now();
    const others = [...procs.keys()].filter((n) => n !== raftLeader);
    const next = await eventually(
      'a stand-in backup leader',
      async () => {
        const roles = await Promise.all(others.map(roleOf));
        const leaders = others.filter((_, i) => roles[i] === 'leader');
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      HANDOFF_MS,
      250,
    );
    t.diagnostic(`stand-in ${next} ${Math.round(performance.now() - killedAt)} ms after the kill`);
    const status = (await getJson<StatusBody>(`${procs.get(next)?.url}/status`)).body;
    assert.match(status.election?.reason ?? '', /standing in/);
    // etcd's leadership did not move: only the sidecar died.
    assert.equal(await cluster.leader(), raftLeader);

    let rev = 0;
    for (let i = 0; i < 5; i++) rev = await write(client, `kill/after/${i}`);
    await eventually(`the stand-in's deltas reach revision ${rev}`, async () => ((await uploadedOf(next)) >= rev ? true : undefined), HANDOFF_MS);
    const store = backupStore(cluster);
    const chain = await currentChain(store);
    assert.ok(chain.contiguous, `gaps: ${JSON.stringify(chain.gaps)}`);
    assert.ok(chain.full && chain.full.lastRevision < before);
    assert.ok(chain.lastRevision >= rev);
    await assertChainEvents(store, chain);
  });
});

describe('the store frozen (S3 server SIGSTOP)', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let fx: StoreFixture;
  const sidecars = new Map<string, InProcess>();

  before(async () => {
    cluster = await TestCluster.start(3);
    fx = await s3Fixture();
    for (const m of cluster.members) sidecars.set(m.name, await startTestSidecar(cluster, m.name, { ...FLAGS, ...fx.flags, 'store-timeout': '2s', 'store-max-attempts': '1' }));
  });
  after(async () => {
    fx?.thaw?.();
    await Promise.all([...sidecars.values()].map((s) => s.close()));
    await fx?.stop();
    await cluster?.stop();
  });

  it('the role loop keeps checking, the leader keeps its role, no follower stands in, and deltas resume after thaw', async (t) => {
    const leader = await eventually(
      'a leader with a full snapshot',
      async () => {
        const l = leadersOf(sidecars);
        return l.length === 1 && sidecars.get(l[0] as string)?.snapshotter?.lastFull ? l[0] : undefined;
      },
      60_000,
    );
    const checks = new Map([...sidecars].map(([n, s]) => [n, s.cluster.roles.checks]));
    const changes = new Map([...sidecars].map(([n, s]) => [n, s.cluster.roles.changes]));
    const client = anyClientOf(sidecars);
    fx.freeze?.();
    let rev = 0;
    try {
      rev = await write(client, 'store-frozen/0');
      await eventually('every heartbeat write fails', async () => ([...sidecars.values()].every((s) => s.cluster.heartbeat.lastError !== undefined) ? true : undefined), 30_000);
      // Every heartbeat in the last read is now going stale; give a stand-in more than a TTL to misfire.
      for (let i = 0; i < 12; i++) {
        await sleep(500);
        assert.deepEqual(leadersOf(sidecars), [leader], `sample ${i}`);
      }
      for (const [n, s] of sidecars) {
        const advanced = s.cluster.roles.checks - (checks.get(n) ?? 0);
        t.diagnostic(`${n}: ${advanced} checks while the store was frozen`);
        assert.ok(advanced >= 5, `${n} checked only ${advanced} times while the store was frozen`);
        assert.equal(s.cluster.roles.changes, changes.get(n), `${n} changed role`);
      }
    } finally {
      fx.thaw?.();
    }
    await eventually(`deltas through revision ${rev} after thaw`, async () => (uploadedBy(sidecars.get(leader)) >= rev ? true : undefined), 60_000);
    assert.deepEqual(leadersOf(sidecars), [leader]);
  });
});
