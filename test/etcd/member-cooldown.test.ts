import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBrokenCircuitError } from 'cockatiel';
import { GRPCUnavailableError } from 'etcd3';
import { MemberCooldown } from '../../src/etcd/client.js';

describe('MemberCooldown (the per-member fault policy of the balanced etcd client)', () => {
  it('skips a member for the cooldown after a recoverable failure, then tries it again', async () => {
    let now = 1_000;
    const policy = new MemberCooldown(3_000, () => now);
    await assert.rejects(
      policy.execute(() => Promise.reject(new GRPCUnavailableError('down'))),
      GRPCUnavailableError,
    );
    now += 2_999;
    await assert.rejects(
      policy.execute(() => 'never called'),
      (e: Error) => isBrokenCircuitError(e),
    );
    now += 1;
    assert.equal(await policy.execute(() => 'answered'), 'answered');
  });

  it('an error etcd3 does not count as the member failing (a bad request) does not skip it', async () => {
    const policy = new MemberCooldown(3_000);
    await assert.rejects(policy.execute(() => Promise.reject(new Error('key not found'))));
    assert.equal(await policy.execute(() => 'answered'), 'answered');
  });

  it('a call made from inside another call on the same member runs at once (etcd3 re-runs a call there on an invalid auth token)', async () => {
    let now = 0;
    const policy = new MemberCooldown(3_000, () => now);
    await assert.rejects(policy.execute(() => Promise.reject(new GRPCUnavailableError('down'))));
    now = 3_000;
    const nested = await policy.execute(() => policy.execute(() => 'inner answered'));
    assert.equal(nested, 'inner answered');
  });
});
