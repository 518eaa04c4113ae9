import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { StatusBody } from '../../src/server/schemas.js';
import { eventually, TestCluster } from '../helpers/cluster.js';
import { getJson, startTestSidecar } from '../helpers/sidecar.js';

type Sidecar = Awaited<ReturnType<typeof startTestSidecar>>;
type MemberDefrag = NonNullable<StatusBody['defrag']>['lastByMember'][number];

/** Large values written then deleted and compacted away: most of every member's db is free pages. */
async function fragment(client: Etcd3, cluster: TestCluster): Promise<void> {
  const value = randomBytes(32 * 1024);
  for (let i = 0; i < 320; i += 32) await Promise.all(Array.from({ length: 32 }, (_, j) => client.put(`/bulk/${i + j}`).value(value)));
  await client.delete().prefix('/bulk/');
  const revision = Number((await client.maintenance.status()).header.revision);
  await cluster.etcdctl(['compact', String(revision), '--physical']);
}

describe('defragmentation by the backup leader', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: Etcd3;
  const sidecars: Sidecar[] = [];
  before(async () => {
    cluster = await TestCluster.start(3);
    client = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    for (const s of sidecars) await s.close();
    client?.close();
    await cluster?.stop();
  });

  it('a fragmented 3-member cluster is defragmented by schedule: followers before the leader, never two at once, every db smaller, writes succeeding throughout, a full snapshot after', async () => {
    await fragment(client, cluster);
    const before = new Map((await cluster.endpointStatus()).map((r) => [r.Endpoint, r.Status.dbSize]));
    for (const m of ['m1', 'm2', 'm3']) {
      sidecars.push(
        await startTestSidecar(cluster, m, { 'defrag-schedule': '*/2 * * * * *', 'defrag-threshold': '50', 'delta-snapshot-period': '1s', 'leader-check-period': '500ms', 'heartbeat-period': '1s' }),
      );
    }
    let writes = 0;
    const failures: string[] = [];
    let writing = true;
    const load = (async () => {
      while (writing) {
        await client
          .put(`/live/${writes % 100}`)
          .value(String(writes))
          .then(
            () => writes++,
            (err: Error) => failures.push(err.message),
          );
      }
    })();
    let done: MemberDefrag[];
    let leaderSidecar: Sidecar;
    try {
      [leaderSidecar, done] = await eventually(
        'every member defragmented by the backup leader',
        async () => {
          for (const s of sidecars) {
            const body = (await getJson<StatusBody>(`${s.url}/status`)).body;
            const ok = body.defrag?.lastByMember.filter((m) => m.outcome === 'defragmented') ?? [];
            if (ok.length === 3) return [s, ok] as const;
          }
          return undefined;
        },
        120_000,
        500,
      ).catch(async (err: Error) => {
        // What each sidecar saw, so a failure on a loaded machine says why (a refused round, a
        // backup leader that changed mid-way, a member under the threshold).
        const seen = await Promise.all(
          sidecars.map(async (s) => ({
            role: s.cluster.role,
            defrag: (await getJson<StatusBody>(`${s.url}/status`).catch(() => undefined))?.body.defrag,
            log: s.lines.filter((l) => /defrag|role/i.test(l)).slice(-15),
          })),
        );
        throw new Error(`${err.message}\n${JSON.stringify(seen, null, 1)}`, { cause: err });
      });
      await eventually(
        'a full snapshot after the defragmentation',
        async () => (leaderSidecar.lines.some((l) => l.includes('after defragmentation') && l.includes('full snapshot starting')) ? true : undefined),
        30_000,
      );
    } finally {
      writing = false;
      await load;
    }
    assert.deepEqual(failures, [], 'every write during the defragmentation succeeded');
    assert.ok(writes > 0);
    const byStart = [...done].sort((a, b) => Date.parse(a.startedAt ?? '') - Date.parse(b.startedAt ?? ''));
    // One at a time: each member's turn starts after the previous one was healthy again.
    for (let i = 1; i < byStart.length; i++) {
      const prev = byStart[i - 1] as MemberDefrag;
      const cur = byStart[i] as MemberDefrag;
      assert.ok(Date.parse(cur.startedAt ?? '') >= Date.parse(prev.startedAt ?? '') + (prev.durationMs ?? 0), `${cur.name} started before ${prev.name} was done`);
    }
    assert.equal(byStart.at(-1)?.raftLeader, true, `the raft leader goes last: ${JSON.stringify(byStart)}`);
    assert.ok(byStart.slice(0, -1).every((m) => m.raftLeader !== true));
    for (const m of done) {
      const url = cluster.member(m.name).clientURL;
      assert.ok((m.dbSizeAfter ?? Infinity) < (m.dbSizeBefore ?? 0), `${m.name}: db ${m.dbSizeBefore} -> ${m.dbSizeAfter}`);
      assert.ok((m.dbSizeAfter ?? Infinity) < (before.get(url) ?? 0) / 2, `${m.name}: less than half of the fragmented db`);
    }
    // Only the backup leader's sidecar ran rounds.
    for (const s of sidecars) if (s !== leaderSidecar) assert.equal((await getJson<StatusBody>(`${s.url}/status`)).body.defrag?.lastByMember.length, 0, 'a follower sidecar defragmented');
  });

  it('POST /defrag on a follower is run by the leader; a member under the threshold is skipped with the reason; ?member= of an unknown name is refused', async () => {
    const follower = sidecars.find((s) => s.cluster.role !== 'leader') as Sidecar;
    await eventually('the follower knows the backup leader from its heartbeat', async () => (follower.cluster.forwardTo() ? true : undefined), 20_000);
    const res = await fetch(`${follower.url}/defrag`, { method: 'POST' });
    const body = (await res.json()) as { members: MemberDefrag[] } | { error: string };
    // A scheduled round may be running right now: then the leader says so.
    if (res.status === 409) assert.match((body as { error: string }).error, /defrag_running/);
    else {
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.ok(res.headers.get('x-ebs-forwarded-to'));
      const members = (body as { members: MemberDefrag[] }).members;
      assert.ok(
        members.every((m) => m.outcome === 'skipped' && /below --defrag-threshold 50%/.test(m.reason ?? '')),
        JSON.stringify(members),
      );
    }
    const unknown = await fetch(`${follower.url}/defrag?member=m9`, { method: 'POST' });
    const refused = (await unknown.json()) as { error: string; message: string };
    assert.equal(unknown.status, 409, JSON.stringify(refused));
    assert.match(refused.error, /defrag_refused|defrag_running/);
  });
});
