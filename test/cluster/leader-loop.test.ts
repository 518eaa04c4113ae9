import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DutyRunner } from '../../src/cluster/duty-runner.js';
import type { Check } from '../../src/cluster/own-member.js';
import { RoleLoop } from '../../src/cluster/role-loop.js';
import type { Role } from '../../src/cluster/role.js';
import { capturingLogger } from '../helpers/sidecar.js';

const LEADS: Check = { result: { kind: 'leader', memberId: 'a1' } };
const SILENT: Check = { result: { kind: 'unconfirmed', reason: 'no answer' } };

function waitFor(cond: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const poll = (): void => {
      if (cond()) resolve();
      else if (Date.now() > deadline) reject(new Error(`${what}: not reached`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

describe('role loop', () => {
  it('feeds each check to the state machine, reports changes, and never runs two checks at once', async () => {
    const script = [LEADS, LEADS, SILENT, SILENT, SILENT, LEADS];
    let i = 0;
    let running = 0;
    let maxRunning = 0;
    const changes: [Role, Role][] = [];
    const loop = new RoleLoop(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        // Slower than the period: the next check must wait for this one, not overlap it.
        await new Promise((r) => setTimeout(r, 15));
        running--;
        return script[Math.min(i++, script.length - 1)] as Check;
      },
      { periodMs: 5, lostAfter: 3, log: capturingLogger().log },
      (role, previous) => changes.push([role, previous]),
    );
    loop.start();
    await waitFor(() => loop.checks >= script.length, 'all checks');
    loop.stop();
    assert.equal(maxRunning, 1);
    assert.deepEqual(changes.slice(0, 3), [
      ['leader', 'unknown'],
      ['unknown', 'leader'],
      ['leader', 'unknown'],
    ]);
  });

  it('a check that throws counts as unconfirmed and the loop goes on', async () => {
    const loop = new RoleLoop(
      () => Promise.reject(new Error('boom')),
      { periodMs: 5, lostAfter: 3, log: capturingLogger().log },
      () => {},
    );
    loop.start();
    await waitFor(() => loop.checks >= 3, 'three checks');
    loop.stop();
    assert.equal(loop.role, 'unknown');
    assert.match(loop.current.reason, /boom/);
    assert.equal(loop.etcdUp, false);
  });
});

describe('duty runner', () => {
  it('stepping down stops the duty at once, even while its start still hangs; leading again starts a fresh one', async () => {
    const made: { started: number; stopped: number; hang: boolean }[] = [];
    let release: () => void = () => {};
    const runner = new DutyRunner(() => {
      const d = { started: 0, stopped: 0, hang: made.length === 0 };
      made.push(d);
      return {
        start: () => {
          d.started++;
          return d.hang ? new Promise<void>((r) => (release = r)) : Promise.resolve();
        },
        stop: async () => {
          d.stopped++;
        },
      };
    }, capturingLogger().log);
    runner.lead();
    await waitFor(() => made[0]?.started === 1, 'first start');
    await runner.stepDown();
    assert.equal(made[0]?.stopped, 1);
    assert.equal(runner.current, undefined);
    release();
    runner.lead();
    await waitFor(() => made[1]?.started === 1, 'second start');
    assert.equal(made.length, 2, 'a fresh duty per term');
    assert.ok(runner.current);
  });

  it('a failed start is retried while the role lasts', async () => {
    let attempts = 0;
    const failures: string[] = [];
    const runner = new DutyRunner(
      () => ({
        start: async () => {
          if (++attempts < 2) throw new Error('etcd not answering');
        },
        stop: async () => {},
      }),
      capturingLogger().log,
      (_d, err) => failures.push(err.message),
    );
    runner.lead();
    await waitFor(() => attempts >= 2, 'retry');
    assert.deepEqual(failures, ['etcd not answering']);
    await runner.stepDown();
  });
});
