import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { effectiveRole, INITIAL_ROLE, nextRole, type CheckResult, type RoleState } from '../../src/cluster/role.js';

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
    assert.deepEqual(feed([SILENT, SILENT, SILENT, SILENT]).map((s) => s.role), ['unknown', 'unknown', 'unknown', 'unknown']);
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
    assert.deepEqual(feed([LEADS, FOLLOWS]).map((s) => s.role), ['leader', 'follower']);
    assert.deepEqual(feed([LEADS, SILENT, FOLLOWS]).map((s) => s.role), ['leader', 'leader', 'follower']);
  });

  it('lostAfter=1 steps down at the first unconfirmed check', () => {
    assert.deepEqual(feed([LEADS, SILENT], 1).map((s) => s.role), ['leader', 'unknown']);
  });

  it('a follower keeps its leader while unconfirmed checks are tolerated and forgets it when unknown', () => {
    const states = feed([FOLLOWS, SILENT, SILENT, SILENT]);
    assert.equal(states[1]?.leaderId, 'b2');
    assert.equal(states[3]?.role, 'unknown');
    assert.equal(states[3]?.leaderId, undefined);
    assert.match(states[3]?.reason ?? '', /3 check\(s\) in a row without a confirmed answer; last: own member did not answer/);
  });

  it('regains leadership after unknown at the next confirmed check', () => {
    assert.deepEqual(feed([LEADS, SILENT, SILENT, SILENT, LEADS]).map((s) => s.role), ['leader', 'leader', 'leader', 'unknown', 'leader']);
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
