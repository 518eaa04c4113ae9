import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/index.js';

const MEMBER = { name: 'm1', 'data-dir': '/var/lib/etcd', 'initial-cluster': 'm1=http://10.0.0.1:2380', 'advertise-client-urls': 'http://10.0.0.1:2379' };
const load = (flags: Record<string, string>) => loadConfig({ flags: { ...MEMBER, ...flags }, env: {}, requireMember: true }).config;

function problemsOf(flags: Record<string, string>): string {
  try {
    load(flags);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  return assert.fail('expected the configuration to be rejected');
}

describe('election and heartbeat settings', () => {
  it('defaults: elect, a check every 2s, lost after 3, heartbeats every 10s that go stale after 30s', () => {
    const c = load({});
    assert.equal(c.snapshotLeader, 'elect');
    assert.equal(c.leaderCheckPeriod, 2_000);
    assert.equal(c.leaderLostAfter, 3);
    assert.equal(c.heartbeatPeriod, 10_000);
    assert.equal(c.heartbeatTtl, 30_000);
    assert.equal(c.advertiseApiUrl, '');
  });

  it('the TTL follows the heartbeat period unless set', () => {
    assert.equal(load({ 'heartbeat-period': '1s' }).heartbeatTtl, 3_000);
    assert.equal(load({ 'heartbeat-period': '1s', 'heartbeat-ttl': '10s' }).heartbeatTtl, 10_000);
  });

  it('bad values are named', () => {
    assert.match(problemsOf({ 'leader-lost-after': '0' }), /--leader-lost-after: must be at least 1/);
    assert.match(problemsOf({ 'leader-check-period': '10ms' }), /--leader-check-period: 10 ms is below 100ms/);
    assert.match(problemsOf({ 'heartbeat-period': '10s', 'heartbeat-ttl': '5s' }), /--heartbeat-ttl: 5000 ms is shorter than --heartbeat-period/);
    assert.match(problemsOf({ 'advertise-api-url': 'ftp://x' }), /--advertise-api-url/);
  });
});
