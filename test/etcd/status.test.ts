import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { memberIdHex, rotationFromMembers, toMember, type Member } from '../../src/etcd/members.js';
import { joinStatus, type EndpointStatus } from '../../src/etcd/status.js';

const member = (id: string, name: string, extra: Partial<Member> = {}): Member => ({
  id,
  name,
  peerURLs: [`http://${name}:2380`],
  clientURLs: [`http://${name}:2379`],
  isLearner: false,
  started: true,
  ...extra,
});

const answer = (m: Member, leaderId: string, extra: Partial<EndpointStatus> = {}): EndpointStatus => ({
  endpoint: m.clientURLs[0] as string,
  reachable: true,
  latencyMs: 1,
  memberId: m.id,
  clusterId: 'c1',
  leaderId,
  revision: 10,
  alarms: [],
  ...extra,
});

const silent = (m: Member): EndpointStatus => ({ endpoint: m.clientURLs[0] as string, reachable: false, latencyMs: 2000, error: 'no answer', alarms: [] });

describe('member list', () => {
  it('prints IDs in hex like etcdctl, exactly, above 2^53', () => {
    assert.equal(memberIdHex('14478146806958099578'), 'c8ecb5cffab18c7a');
    assert.equal(memberIdHex('0'), '0');
  });

  it('marks members added but never started', () => {
    assert.equal(toMember({ ID: '10', name: '', peerURLs: ['http://x:2380'], clientURLs: [], isLearner: true }).started, false);
    assert.equal(toMember({ ID: '10', name: 'a', peerURLs: ['http://x:2380'], clientURLs: ['http://x:2379'], isLearner: false }).started, true);
  });

  it('the rotation never holds a learner or an unstarted member (seed 002)', () => {
    const arbMember = fc.record({
      id: fc.stringMatching(/^[0-9a-f]{1,16}$/),
      name: fc.constantFrom<string>('', 'a', 'b', 'c'),
      peerURLs: fc.constant<string[]>(['http://p:2380']),
      clientURLs: fc.array(fc.constantFrom<string>('http://a:2379', 'http://b:2379', 'http://c:2379', 'http://d:2379'), { maxLength: 2 }),
      isLearner: fc.boolean(),
      started: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(arbMember, { maxLength: 6 }), (members) => {
        const rotation = rotationFromMembers(members);
        const eligible = new Set(members.filter((m) => m.started && !m.isLearner).flatMap((m) => m.clientURLs));
        return rotation.every((u) => eligible.has(u)) && eligible.size === rotation.length;
      }),
    );
  });
});

describe('joinStatus', () => {
  const [a, b, c] = [member('a1', 'a'), member('b2', 'b'), member('c3', 'c')];

  it('all answering: healthy, leader named, quorum', () => {
    const s = joinStatus([a, b, c], [answer(a, 'b2'), answer(b, 'b2'), answer(c, 'b2')], undefined, performance.now());
    assert.deepEqual(s.leader, { id: 'b2', name: 'b' });
    assert.equal(s.healthyVoters, 3);
    assert.equal(s.hasQuorum, true);
    assert.deepEqual(
      s.members.map((m) => m.isLeader),
      [false, true, false],
    );
    assert.equal(s.clusterId, 'c1');
  });

  it('one silent member is unhealthy with the reason; the others keep quorum', () => {
    const s = joinStatus([a, b, c], [silent(a), answer(b, 'b2'), answer(c, 'b2')], undefined, performance.now());
    assert.equal(s.members[0]?.healthy, false);
    assert.equal(s.members[0]?.error, 'no answer');
    assert.equal(s.hasQuorum, true);
  });

  it('members that know no leader are unhealthy, and two of three silent lose quorum', () => {
    const s = joinStatus([a, b, c], [answer(a, '0'), silent(b), silent(c)], undefined, performance.now());
    assert.equal(s.members[0]?.healthy, false);
    assert.equal(s.members[0]?.error, 'member has no leader');
    assert.equal(s.hasQuorum, false);
    assert.equal(s.leader, undefined);
  });

  it('an alarm makes a member unhealthy', () => {
    const s = joinStatus([a], [answer(a, 'a1', { alarms: ['NOSPACE'] })], undefined, performance.now());
    assert.equal(s.members[0]?.healthy, false);
    assert.match(s.members[0]?.error ?? '', /NOSPACE/);
  });

  it('learners do not count as voters; unstarted members say so', () => {
    const learner = member('d4', 'd', { isLearner: true });
    const unstarted = member('e5', '', { clientURLs: [], started: false, isLearner: true });
    const s = joinStatus([a, b, c, learner, unstarted], [answer(a, 'a1'), answer(b, 'a1'), answer(c, 'a1'), answer(learner, 'a1')], undefined, performance.now());
    assert.equal(s.voters, 3);
    assert.equal(s.members[4]?.error, 'member added but not started yet');
  });

  it('without a member list, members come from the probes', () => {
    const s = joinStatus(undefined, [answer(a, 'a1'), silent(b)], 'member list: no endpoint answered', performance.now());
    assert.equal(s.members.length, 2);
    assert.equal(s.memberListError, 'member list: no endpoint answered');
    assert.equal(s.members[0]?.healthy, true);
  });
});
