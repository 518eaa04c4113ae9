import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { HeartbeatAges } from '../../src/cluster/heartbeat-ages.js';
import { defaultApiURL, HeartbeatWriter, leaderHeartbeat, parseHeartbeat, readHeartbeats, type Heartbeat } from '../../src/cluster/heartbeat.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { capturingLogger } from '../helpers/sidecar.js';

const HB: Heartbeat = { name: 'm1', memberId: 'a1', clusterId: 'c1', role: 'leader', revision: 42, raftIndex: 50, apiURL: 'http://10.0.0.1:8080', time: '2026-01-01T00:00:00.000Z', etcdUp: true };

describe('heartbeats', () => {
  it('parse what they write and name what is wrong with the rest', () => {
    assert.deepEqual(parseHeartbeat(JSON.stringify(HB)), HB);
    assert.match(parseHeartbeat('{') as string, /not JSON/);
    assert.match(parseHeartbeat('[]') as string, /^\/: Expected object/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, role: 'boss' })) as string, /^\/role: /);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, time: 'yesterday' })) as string, /^\/time: .*date-time/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, revision: '42' })) as string, /^\/revision: Expected integer/);
  });

  it('parse and check the waiting report a waiting initializer publishes', () => {
    const waiting = { ...HB, etcdUp: false, waiting: { dataLost: false, clusterId: 'c1', memberId: 'a1', raftIndex: 50, revisionBound: 44 } };
    assert.deepEqual(parseHeartbeat(JSON.stringify(waiting)), waiting);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, waiting: { raftIndex: 3 } })) as string, /^\/waiting\/dataLost: Expected required property/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, waiting: { dataLost: false, raftIndex: 'x' } })) as string, /^\/waiting\/raftIndex: Expected integer/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, inQuorum: 'yes' })) as string, /^\/inQuorum: Expected boolean/);
  });

  it("age by the reader's own clock: the time since it saw the heartbeat change, whatever the writer's clock says", () => {
    let now = 1_000;
    const ages = new HeartbeatAges(() => now);
    // A writer 60 s behind and one 60 s ahead of this reader: their stamps say nothing of their age.
    const behind: Heartbeat = { ...HB, name: 'behind', time: new Date(Date.now() - 60_000).toISOString() };
    const ahead: Heartbeat = { ...HB, name: 'ahead', time: new Date(Date.now() + 60_000).toISOString() };
    assert.deepEqual(
      ages.observe([behind, ahead]).map((h) => h.ageMs),
      [0, 0],
      'first seen: taken for fresh',
    );
    now += 4_000;
    const moved = { ...behind, time: new Date(Date.parse(behind.time) + 4_000).toISOString() };
    assert.deepEqual(
      ages.observe([moved, ahead]).map((h) => h.ageMs),
      [0, 4_000],
      'the one that changed is fresh, the one that did not ages',
    );
    now += 30_000;
    assert.deepEqual(
      ages.observe([moved, ahead]).map((h) => h.ageMs),
      [30_000, 34_000],
    );
    assert.equal(ages.ageMs('ahead'), 34_000);
    assert.equal(ages.ageMs('never'), undefined);
  });

  it('the leader is a fresh heartbeat announcing leader, the etcd leader first, never this sidecar', () => {
    const hb = { ...HB, ageMs: 5_000 };
    const other = { ...HB, name: 'm2', memberId: 'b2', ageMs: 1_000 };
    assert.equal(leaderHeartbeat([hb, other], 30_000)?.name, 'm2', 'newest first without an etcd leader');
    assert.equal(leaderHeartbeat([hb, other], 30_000, 'a1')?.name, 'm1');
    assert.equal(leaderHeartbeat([hb], 3_000), undefined, 'stale');
    assert.equal(leaderHeartbeat([hb], 30_000, 'a1', 'm1'), undefined, 'self');
    assert.equal(leaderHeartbeat([{ ...hb, role: 'follower' }], 30_000), undefined);
  });

  it('default API URL: the listen address, with the advertised host for a wildcard bind', () => {
    assert.equal(defaultApiURL('0.0.0.0', 8080, ['https://10.1.2.3:2379']), 'http://10.1.2.3:8080');
    assert.equal(defaultApiURL('127.0.0.1', 9000, ['http://10.1.2.3:2379']), 'http://127.0.0.1:9000');
    assert.equal(defaultApiURL('::1', 9000, []), 'http://[::1]:9000');
  });

  it('written to members/<name>.json in a real store, read back, garbage skipped and logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-hb-'));
    const store = new LocalStore(dir);
    const { log, lines } = capturingLogger();
    try {
      const writer = new HeartbeatWriter(store, () => ({ name: 'm3', role: 'unknown', apiURL: 'http://127.0.0.1:1', etcdUp: false }), {
        periodMs: 1_000,
        log,
        now: () => new Date('2026-01-01T00:00:00Z'),
      });
      await writer.writeNow();
      await store.put('members/broken.json', Readable.from([Buffer.from('{"name":')]));
      await store.put('members/m1.json', Readable.from([Buffer.from(JSON.stringify(HB))]));
      const hbs = await readHeartbeats(store, log);
      assert.deepEqual(hbs.map((h) => h.name).sort(), ['m1', 'm3']);
      assert.deepEqual(
        hbs.find((h) => h.name === 'm3'),
        { name: 'm3', role: 'unknown', apiURL: 'http://127.0.0.1:1', etcdUp: false, time: '2026-01-01T00:00:00.000Z' },
      );
      assert.ok(
        lines.some((l) => l.includes('members/broken.json') && l.includes('not a heartbeat')),
        'garbage logged',
      );
      // Outside v2/: the snapshot listing (the anchor's parser) never sees them.
      assert.deepEqual((await store.list('v2/')).objects, []);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('carry the last identity and raft index across a sidecar restart with etcd down (seed 004 record), drop them for another member ID, and take what remember() sets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-hb-'));
    const store = new LocalStore(dir);
    const { log } = capturingLogger();
    const own = async (): Promise<Heartbeat | undefined> => (await readHeartbeats(store, log)).find((h) => h.name === 'm1');
    try {
      await new HeartbeatWriter(store, () => ({ name: 'm1', role: 'leader', apiURL: 'u', etcdUp: true, memberId: 'a1', clusterId: 'c1', raftIndex: 50, revision: 42 }), {
        periodMs: 1_000,
        log,
      }).writeNow();
      // A new sidecar process whose etcd does not answer: the record survives.
      const down = new HeartbeatWriter(store, () => ({ name: 'm1', role: 'unknown', apiURL: 'u', etcdUp: false }), { periodMs: 1_000, log });
      await down.writeNow();
      assert.deepEqual({ ...(await own()), time: '' }, { name: 'm1', role: 'unknown', apiURL: 'u', etcdUp: false, memberId: 'a1', clusterId: 'c1', raftIndex: 50, revision: 42, time: '' });
      // After a restore: the new raft log's index, not the old one.
      down.remember({ memberId: 'a1', clusterId: 'c1', raftIndex: 3, revision: 42 });
      down.waiting = { dataLost: true };
      await down.writeNow();
      assert.equal((await own())?.raftIndex, 3);
      assert.deepEqual((await own())?.waiting, { dataLost: true });
      // The member was replaced: another ID, nothing of the old one's progress.
      await new HeartbeatWriter(store, () => ({ name: 'm1', role: 'follower', apiURL: 'u', etcdUp: true, memberId: 'b2', clusterId: 'c1' }), { periodMs: 1_000, log }).writeNow();
      assert.equal((await own())?.raftIndex, undefined);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a write asked for while one is in flight is made after it, with the facts of the moment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-hb-'));
    const store = new LocalStore(dir);
    const { log } = capturingLogger();
    let role: Heartbeat['role'] = 'follower';
    try {
      const writer = new HeartbeatWriter(store, () => ({ name: 'm2', role, apiURL: 'u', etcdUp: true }), { periodMs: 1_000, log });
      const first = writer.writeNow();
      role = 'leader';
      await Promise.all([first, writer.writeNow(), writer.writeNow()]);
      assert.equal((await readHeartbeats(store, log)).find((h) => h.name === 'm2')?.role, 'leader');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a heartbeat torn by a writer killed mid-put', () => {
  it('is replaced by the next writer (the member must not look dead forever), and the loss of its record is logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-hb-'));
    const store = new LocalStore(dir);
    const { log, lines } = capturingLogger();
    try {
      await new HeartbeatWriter(store, () => ({ name: 'm2', role: 'leader', apiURL: 'u', etcdUp: true, memberId: 'a2', clusterId: 'c1', raftIndex: 50 }), { periodMs: 1_000, log }).writeNow();
      // The object's bytes no longer match what its metadata recorded: what a kill between the
      // store's renames leaves.
      writeFileSync(join(dir, 'members', 'm2.json'), '{"name":"m2"}');
      const next = new HeartbeatWriter(store, () => ({ name: 'm2', role: 'unknown', apiURL: 'u', etcdUp: false }), { periodMs: 1_000, log });
      await next.writeNow();
      const back = (await readHeartbeats(store, log)).find((h) => h.name === 'm2');
      assert.equal(back?.etcdUp, false);
      assert.equal(back?.raftIndex, undefined, 'the torn record carries nothing forward');
      assert.ok(lines.some((l) => l.includes('previous heartbeat is corrupt')));
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
