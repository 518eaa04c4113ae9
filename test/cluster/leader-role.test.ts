import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { effectiveRole, INITIAL_ROLE, nextRole, shouldStandIn, type CheckResult, type PeerBeat, type RoleState } from '../../src/cluster/role.js';

const LEADS: CheckResult = { kind: 'leader', memberId: 'a1' };
const FOLLOWS: CheckResult = { kind: 'follower', memberId: 'a1', leaderId: 'b2' };
const SILENT: CheckResult = { kind: 'unconfirmed', reason: 'own member did not answer its status' };

function feed(checks: CheckResult[], lostAfter = 3, from: RoleState = INITIAL_ROLE): RoleState[] {
  const out: RoleState[] = [];
  let s = from;
  for (const c of checks) out.push((s = nextRole(s, c, lostAfter)));
  return out;
}

describe('backup role state machine', () => {
  it('starts unknown and takes a confirmed role at the first answer', () => {
    assert.equal(INITIAL_ROLE.role, 'unknown');
    assert.equal(feed([LEADS])[0]?.role, 'leader');
    assert.equal(feed([FOLLOWS])[0]?.role, 'follower');
    assert.equal(feed([FOLLOWS])[0]?.leaderId, 'b2');
  });

  it('stays unknown while nothing is confirmed', () => {
    assert.deepEqual(
      feed([SILENT, SILENT, SILENT, SILENT]).map((s) => s.role),
      ['unknown', 'unknown', 'unknown', 'unknown'],
    );
  });

  it('a leader keeps its role through lostAfter-1 unconfirmed checks and steps down at the lostAfter-th', () => {
    const roles = feed([LEADS, SILENT, SILENT, SILENT]).map((s) => s.role);
    assert.deepEqual(roles, ['leader', 'leader', 'leader', 'unknown']);
  });

  it('one confirmed answer resets the count of unconfirmed checks', () => {
    const roles = feed([LEADS, SILENT, SILENT, LEADS, SILENT, SILENT, SILENT]).map((s) => s.role);
    assert.deepEqual(roles, ['leader', 'leader', 'leader', 'leader', 'leader', 'leader', 'unknown']);
  });

  it('a leader that sees another member lead steps down at once', () => {
    assert.deepEqual(
      feed([LEADS, FOLLOWS]).map((s) => s.role),
      ['leader', 'follower'],
    );
    assert.deepEqual(
      feed([LEADS, SILENT, FOLLOWS]).map((s) => s.role),
      ['leader', 'leader', 'follower'],
    );
  });

  it('lostAfter=1 steps down at the first unconfirmed check', () => {
    assert.deepEqual(
      feed([LEADS, SILENT], 1).map((s) => s.role),
      ['leader', 'unknown'],
    );
  });

  it('a follower keeps its leader while unconfirmed checks are tolerated and forgets it when unknown', () => {
    const states = feed([FOLLOWS, SILENT, SILENT, SILENT]);
    assert.equal(states[1]?.leaderId, 'b2');
    assert.equal(states[3]?.role, 'unknown');
    assert.equal(states[3]?.leaderId, undefined);
    assert.match(states[3]?.reason ?? '', /3 check\(s\) in a row without a confirmed answer; last: own member did not answer/);
  });

  it('regains leadership after unknown at the next confirmed check', () => {
    assert.deepEqual(
      feed([LEADS, SILENT, SILENT, SILENT, LEADS]).map((s) => s.role),
      ['leader', 'leader', 'leader', 'unknown', 'leader'],
    );
  });

  it('--snapshot-leader always and never override the elected role', () => {
    for (const r of ['leader', 'follower', 'unknown'] as const) {
      assert.equal(effectiveRole('always', r), 'leader');
      assert.equal(effectiveRole('elect', r), r);
    }
    assert.equal(effectiveRole('never', 'leader'), 'follower');
    assert.equal(effectiveRole('never', 'follower'), 'follower');
    assert.equal(effectiveRole('never', 'unknown'), 'unknown');
  });
});

describe('standing in for a backup leader whose sidecar is gone', () => {
  const beat = (name: string, memberId: string, ageMs: number, extra: Partial<PeerBeat> = {}): PeerBeat => ({ name, memberId, etcdUp: true, ageMs, ...extra });
  const base = { leaderId: 'l1', ttlMs: 3_000, runningMs: 60_000, directoryRead: true };
  const beats = [beat('m1', 'l1', 10_000), beat('m2', 'f2', 500), beat('m3', 'f3', 500)];

  it('the live follower with the smallest name stands in when the leader heartbeat is stale', () => {
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats }), true);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats }), false);
  });

  it('nobody stands in while the leader sidecar beats', () => {
    const alive = [beat('m1', 'l1', 900), ...beats.slice(1)];
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: alive }), false);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: alive }), false);
  });

  it("a raft leader whose live sidecar never backs up (--snapshot-leader=never) is stood in for, and a 'never' sidecar never stands in", () => {
    const neverLeads = [beat('m1', 'l1', 500, { backsUp: false }), beat('m2', 'f2', 500), beat('m3', 'f3', 500)];
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: neverLeads }), true);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: neverLeads }), false);
    const neverFollows = [beat('m1', 'l1', 500, { backsUp: false }), beat('m2', 'f2', 500, { backsUp: false }), beat('m3', 'f3', 500)];
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: neverFollows }), true, 'm2 never backs up: m3 is next');
  });

  it('a follower whose member is down or whose heartbeat is stale is passed over', () => {
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: [beats[0] as PeerBeat, beat('m2', 'f2', 500, { etcdUp: false }), beats[2] as PeerBeat] }), true);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: [beats[0] as PeerBeat, beat('m2', 'f2', 9_000), beats[2] as PeerBeat] }), true);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: [beats[0] as PeerBeat, beat('m2', 'f2', 500, { learner: true }), beats[2] as PeerBeat] }), true);
  });

  it('nobody stands in while its own heartbeat is stale or missing: the store is failing, not the leader sidecar', () => {
    const storeDown = [beat('m1', 'l1', 10_000), beat('m2', 'f2', 10_000), beat('m3', 'f3', 10_000)];
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: storeDown }), false);
    assert.equal(shouldStandIn({ ...base, self: 'm3', beats: storeDown }), false);
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: [beats[0] as PeerBeat] }), false);
  });

  it('a missing leader heartbeat counts only after one TTL of running, and never before the first read', () => {
    const noLeader = beats.slice(1);
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: noLeader, runningMs: 2_000 }), false);
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats: noLeader }), true);
    assert.equal(shouldStandIn({ ...base, self: 'm2', beats, directoryRead: false }), false);
  });

  it('a stand-in leads with the etcd leader remembered and steps down at the next plain follower answer', () => {
    const states = feed([{ kind: 'leader', memberId: 'f2', standInFor: 'l1' }, FOLLOWS]);
    assert.equal(states[0]?.role, 'leader');
    assert.match(states[0]?.reason ?? '', /standing in/);
    assert.equal(states[1]?.role, 'follower');
  });
});
