import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { defaultApiURL, heartbeatAgeMs, HeartbeatWriter, leaderHeartbeat, parseHeartbeat, readHeartbeats, type Heartbeat } from '../../src/cluster/heartbeat.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { capturingLogger } from '../helpers/sidecar.js';

const HB: Heartbeat = { name: 'm1', memberId: 'a1', clusterId: 'c1', role: 'leader', revision: 42, raftIndex: 50, apiURL: 'http://10.0.0.1:8080', time: '2026-01-01T00:00:00.000Z', etcdUp: true };

describe('heartbeats', () => {
  it('parse what they write and name what is wrong with the rest', () => {
    assert.deepEqual(parseHeartbeat(JSON.stringify(HB)), HB);
    assert.match(parseHeartbeat('{') as string, /not JSON/);
    assert.match(parseHeartbeat('[]') as string, /not a JSON object/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, role: 'boss' })) as string, /role: "boss" is not leader, follower or unknown/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, time: 'yesterday' })) as string, /time: "yesterday"/);
    assert.match(parseHeartbeat(JSON.stringify({ ...HB, revision: '42' })) as string, /revision: not a number/);
  });

  it('age by the reader clock', () => {
    assert.equal(heartbeatAgeMs(HB, new Date('2026-01-01T00:00:05Z')), 5_000);
  });

  it('the leader is a fresh heartbeat announcing leader, the etcd leader first, never this sidecar', () => {
    const now = new Date('2026-01-01T00:00:05Z');
    const other: Heartbeat = { ...HB, name: 'm2', memberId: 'b2', time: '2026-01-01T00:00:04Z' };
    assert.equal(leaderHeartbeat([HB, other], now, 30_000)?.name, 'm2', 'newest first without an etcd leader');
    assert.equal(leaderHeartbeat([HB, other], now, 30_000, 'a1')?.name, 'm1');
    assert.equal(leaderHeartbeat([HB], now, 3_000), undefined, 'stale');
    assert.equal(leaderHeartbeat([HB], now, 30_000, 'a1', 'm1'), undefined, 'self');
    assert.equal(leaderHeartbeat([{ ...HB, role: 'follower' }], now, 30_000), undefined);
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
      const writer = new HeartbeatWriter(store, () => ({ name: 'm3', role: 'unknown', apiURL: 'http://127.0.0.1:1', etcdUp: false }), { periodMs: 1_000, log, now: () => new Date('2026-01-01T00:00:00Z') });
      await writer.writeNow();
      await store.put('members/broken.json', Readable.from([Buffer.from('{"name":')]));
      await store.put('members/m1.json', Readable.from([Buffer.from(JSON.stringify(HB))]));
      const hbs = await readHeartbeats(store, log);
      assert.deepEqual(hbs.map((h) => h.name).sort(), ['m1', 'm3']);
      assert.deepEqual(hbs.find((h) => h.name === 'm3'), { name: 'm3', role: 'unknown', apiURL: 'http://127.0.0.1:1', etcdUp: false, time: '2026-01-01T00:00:00.000Z' });
      assert.ok(lines.some((l) => l.includes('members/broken.json') && l.includes('not a heartbeat')), 'garbage logged');
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
      await new HeartbeatWriter(store, () => ({ name: 'm1', role: 'leader', apiURL: 'u', etcdUp: true, memberId: 'a1', clusterId: 'c1', raftIndex: 50, revision: 42 }), { periodMs: 1_000, log }).writeNow();
      // A new sidecar process whose etcd does not answer: the record survives.
      const down = new HeartbeatWriter(store, () => ({ name: 'm1', role: 'unknown', apiURL: 'u', etcdUp: false }), { periodMs: 1_000, log });
      await down.writeNow();
      assert.deepEqual({ ...(await own()), time: '' }, { name: 'm1', role: 'unknown', apiURL: 'u', etcdUp: false, memberId: 'a1', clusterId: 'c1', raftIndex: 50, revision: 42, time: '' });
      // After a restore: the new raft log's index, not the old one.
      down.remember({ memberId: 'a1', clusterId: 'c1', raftIndex: 3, revision: 42 });
      down.awaitingRestore = true;
      await down.writeNow();
      assert.equal((await own())?.raftIndex, 3);
      assert.equal((await own())?.awaitingRestore, true);
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
