/**
 * DeadlineSweep: many calls' deadlines on one timer, each expiring once, in order, and none once ended.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineError, DeadlineSweep } from '../src/resilience.js';

describe('DeadlineSweep', () => {
  it('expires only the calls still pending at their deadline, oldest first, each once', async () => {
    const sweep = new DeadlineSweep(100);
    const expired: string[] = [];
    const note = (err: DeadlineError): void => void expired.push(`${err.what}/${err.ms}`);
    const a = sweep.start('a', note);
    sweep.start('b', note);
    await sleep(50);
    sweep.start('c', note);
    sweep.end(a);
    assert.equal(sweep.size, 2);
    await sleep(80);
    assert.deepEqual(expired, ['b/100']);
    await sleep(80);
    assert.deepEqual(expired, ['b/100', 'c/100']);
    assert.equal(sweep.size, 0);
  });

  it('gives a call started while others expire its own full deadline, and the older ones theirs', async () => {
    const sweep = new DeadlineSweep(60);
    const at: Record<string, number> = {};
    const t = performance.now();
    sweep.start('first', () => {
      at['first'] = performance.now() - t;
      // A caller retrying right away: the new call must wait its whole 60 ms.
      sweep.start('retry', () => (at['retry'] = performance.now() - t));
    });
    await sleep(20);
    sweep.start('second', () => (at['second'] = performance.now() - t));
    await sleep(400);
    const { first, second, retry } = at as { first: number; second: number; retry: number };
    assert.ok(first >= 59 && first < 250, `first at ${first}`);
    assert.ok(second >= 79 && second < retry, `second at ${second}, not delayed to the retry's deadline`);
    assert.ok(retry >= first + 59, `retry at ${retry}`);
    assert.equal(sweep.size, 0);
  });

  it('refuses a deadline that is not a positive integer', () => {
    assert.throws(() => new DeadlineSweep(0), /deadline 0 ms is not a positive integer/);
    assert.throws(() => new DeadlineSweep(1.5), /not a positive integer/);
  });
});
