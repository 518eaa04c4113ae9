import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RevisionBatch } from '../../src/restore/plan.js';
import { ReplayGuards } from '../../src/restore/replay-guards.js';

const ev = (type: 'put' | 'delete', key: string, revision: number, lease = '0'): RevisionBatch['events'][number] => ({
  type,
  kv: { key: Buffer.from(key), value: Buffer.from(type === 'put' ? `v${revision}` : ''), createRevision: 0, modRevision: revision, version: type === 'put' ? 1 : 0, lease },
  time: '2026-01-01T00:00:00Z',
});
const batch = (revision: number, ...events: [type: 'put' | 'delete', key: string, lease?: string][]): RevisionBatch => ({ revision, events: events.map(([t, k, l]) => ev(t, k, revision, l)) });
const show = (c: { key?: Buffer; target?: unknown; result?: unknown; version?: unknown; mod_revision?: unknown }): string =>
  `${c.key?.toString()} ${String(c.target)} ${String(c.result)} ${String(c.target === 'Mod' ? c.mod_revision : c.version)}`;

describe('replay guards', () => {
  it('the first revision after the full snapshot needs no predecessor; its own keys must not be applied yet', () => {
    const g = new ReplayGuards(100, 16);
    const t = g.next(batch(101, ['put', 'a'], ['delete', 'b']));
    assert.deepEqual(t.compare.map(show), ['a Mod Less 101', 'b Version Greater 0']);
    assert.equal(t.sendAfter, 100);
    assert.deepEqual(
      t.success.map((o) => Object.keys(o)[0]),
      ['request_put', 'request_delete_range'],
    );
  });

  it('a predecessor that put a key: that key at mod_revision r-1, sendable at once', () => {
    const g = new ReplayGuards(100, 16);
    g.next(batch(101, ['delete', 'x'], ['put', 'a'], ['put', 'b']));
    const t = g.next(batch(102, ['put', 'a']));
    assert.deepEqual(t.compare.map(show), ['a Mod Equal 101', 'a Mod Less 102']);
    assert.equal(t.sendAfter, 100);
  });

  it('a delete-only predecessor of a key put before the kept history: the key absent, sendable within the window', () => {
    const g = new ReplayGuards(100, 16);
    g.next(batch(101, ['delete', 'old'], ['delete', 'older']));
    const t = g.next(batch(102, ['put', 'a']));
    assert.deepEqual(t.compare.map(show), ['old Version Equal 0', 'a Mod Less 102']);
    assert.equal(t.sendAfter, 100);
  });

  it('a delete-only predecessor of keys put lately: the one put longest ago, and wait for its put to be applied', () => {
    const g = new ReplayGuards(100, 16);
    g.next(batch(101, ['put', 'k1']));
    g.next(batch(102, ['put', 'k2']));
    g.next(batch(103, ['put', 'k1'], ['put', 'z']));
    g.next(batch(104, ['delete', 'k1'], ['delete', 'k2']));
    const t = g.next(batch(105, ['put', 'k1']));
    // k1 was put at 103, k2 at 102: "k2 absent" fails on every state from 102 to 103.
    assert.deepEqual(t.compare.map(show), ['k2 Version Equal 0', 'k1 Mod Less 105']);
    assert.equal(t.sendAfter, 102);
  });

  it('a key put just before its delete holds the next revision back to right after the put (create then delete)', () => {
    const g = new ReplayGuards(100, 16);
    g.next(batch(101, ['put', 'tmp']));
    g.next(batch(102, ['delete', 'tmp']));
    const t = g.next(batch(103, ['put', 'tmp']));
    assert.deepEqual(t.compare.map(show), ['tmp Version Equal 0', 'tmp Mod Less 103']);
    assert.equal(t.sendAfter, 101);
  });

  it('a put older than the horizon counts as before the oldest kept batch', () => {
    const g = new ReplayGuards(100, 3);
    g.next(batch(101, ['put', 'k']));
    for (let r = 102; r <= 105; r++) g.next(batch(r, ['put', `f${r}`]));
    g.next(batch(106, ['delete', 'k']));
    const t = g.next(batch(107, ['put', 'y']));
    // Kept before 106: 103, 104, 105. k was put before 103, so at 102 at the latest.
    assert.equal(t.sendAfter, 102);
    assert.deepEqual(t.compare.map(show), ['k Version Equal 0', 'y Mod Less 107']);
  });

  it('leases the puts attach, each once', () => {
    const g = new ReplayGuards(100, 16);
    const t = g.next(batch(101, ['put', 'a', '7'], ['put', 'b', '7'], ['put', 'c', '9'], ['put', 'd']));
    assert.deepEqual(t.leases, ['7', '9']);
    assert.deepEqual(t.success[0], { request_put: { key: Buffer.from('a'), value: Buffer.from('v101'), lease: '7' } });
  });

  it('refuses a batch out of order', () => {
    const g = new ReplayGuards(100, 16);
    assert.throws(() => g.next(batch(102, ['put', 'a'])), /after revision 100/);
  });
});
