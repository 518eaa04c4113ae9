import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ICompare, IRequestOp } from 'etcd3';
import fc from 'fast-check';
import { RestoreError, type RevisionBatch } from '../../src/restore/plan.js';
import { ReplayGuards } from '../../src/restore/replay-guards.js';
import { ReplayWindow, type GuardedTxnTarget } from '../../src/restore/replay-window.js';
import { mulberry32 } from '../helpers/random.js';

/**
 * etcd's transaction semantics on a map, with the requests in flight applied in an order the test
 * picks (shuffled per burst): compares on a missing key see zeros, a transaction that writes
 * nothing moves no revision. Each put's value names its revision, so the order things applied in
 * can be checked.
 */
class ShuffledEtcd implements GuardedTxnTarget {
  revision: number;
  readonly kv = new Map<string, { mod: number; version: number }>();
  readonly applied: number[] = [];
  private pending: { compare: ICompare[]; ops: IRequestOp[]; resolve: (r: { succeeded: boolean; revision: number }) => void }[] = [];

  constructor(
    start: number,
    private readonly random: () => number,
  ) {
    this.revision = start;
  }

  guardedTxn(compare: ICompare[], ops: IRequestOp[]): Promise<{ succeeded: boolean; revision: number }> {
    return new Promise((resolve) => {
      if (this.pending.push({ compare, ops, resolve }) === 1) setTimeout(() => this.pump(), 0);
    });
  }

  private holds(c: ICompare): boolean {
    const kv = this.kv.get((c.key as Buffer).toString()) ?? { mod: 0, version: 0 };
    const [have, want] = c.target === 'Mod' ? [kv.mod, Number(c.mod_revision)] : [kv.version, Number(c.version)];
    return c.result === 'Equal' ? have === want : c.result === 'Less' ? have < want : have > want;
  }

  private pump(): void {
    const burst = this.pending;
    this.pending = [];
    for (let i = burst.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [burst[i], burst[j]] = [burst[j]!, burst[i]!];
    }
    for (const p of burst) {
      if (!p.compare.every((c) => this.holds(c))) {
        p.resolve({ succeeded: false, revision: this.revision });
        continue;
      }
      let wrote = false;
      for (const op of p.ops) {
        if (op.request_put) {
          const key = (op.request_put.key as Buffer).toString();
          this.kv.set(key, { mod: this.revision + 1, version: (this.kv.get(key)?.version ?? 0) + 1 });
          wrote = true;
          this.applied.push(Number((op.request_put.value as Buffer).toString()));
        } else if (op.request_delete_range) {
          wrote = this.kv.delete((op.request_delete_range.key as Buffer).toString()) || wrote;
        }
      }
      if (wrote) this.revision++;
      p.resolve({ succeeded: true, revision: this.revision });
    }
  }
}

const batch = (revision: number, events: [type: 'put' | 'delete', key: string][]): RevisionBatch => ({
  revision,
  events: events.map(([type, key]) => ({
    type,
    kv: { key: Buffer.from(key), value: Buffer.from(String(revision)), createRevision: 0, modRevision: revision, version: 0, lease: '0' },
    time: '2026-01-01T00:00:00Z',
  })),
});

async function replay(etcd: ShuffledEtcd, batches: RevisionBatch[], window: number): Promise<ReplayWindow> {
  const start = etcd.revision;
  const guards = new ReplayGuards(start, window);
  const sender = new ReplayWindow(etcd, window, start);
  try {
    for (const b of batches) await sender.send(guards.next(b), 'test');
    await sender.drain();
  } finally {
    await sender.settle();
  }
  return sender;
}

describe('replay window against shuffled arrivals', () => {
  it('applies every revision once and in order whatever order each burst arrives in', async () => {
    const keys = ['a', 'b', 'c', 'd'];
    const history = fc.array(fc.uniqueArray(fc.tuple(fc.constantFrom<'put' | 'delete'>('put', 'delete'), fc.constantFrom(...keys)), { minLength: 1, maxLength: 3, selector: ([, k]) => k }), {
      minLength: 1,
      maxLength: 80,
    });
    let resent = 0;
    await fc.assert(
      fc.asyncProperty(history, fc.integer({ min: 1, max: 24 }), fc.nat(), async (steps, window, seed) => {
        // Keep the history faithful: a delete only of a key that exists, as a watch reports.
        const live = new Set<string>();
        const batches: RevisionBatch[] = [];
        for (const step of steps) {
          const events = step.filter(([t, k]) => t === 'put' || live.has(k));
          if (events.length === 0) continue;
          for (const [t, k] of events) {
            if (t === 'put') live.add(k);
            else live.delete(k);
          }
          batches.push(batch(101 + batches.length, events));
        }
        const etcd = new ShuffledEtcd(100, mulberry32(seed));
        const sender = await replay(etcd, batches, window);
        assert.equal(etcd.revision, 100 + batches.length);
        assert.deepEqual([...etcd.kv.keys()].sort(), [...live].sort());
        // Every put applied exactly once, in revision order.
        assert.deepEqual(
          etcd.applied,
          batches.flatMap((b) => b.events.filter((e) => e.type === 'put').map(() => b.revision)),
        );
        assert.equal(sender.counts.sent, batches.length + sender.counts.resent);
        resent += sender.counts.resent;
      }),
      { numRuns: 300 },
    );
    assert.ok(resent > 0, 'no transaction was ever refused: the shuffling proved nothing');
  });

  it('stops with revision_mismatch when a revision deletes a key the etcd does not hold', async () => {
    const etcd = new ShuffledEtcd(100, mulberry32(1));
    const err = await replay(
      etcd,
      [
        batch(101, [['put', 'a']]),
        batch(102, [
          ['delete', 'missing'],
          ['put', 'b'],
        ]),
        batch(103, [['put', 'c']]),
      ],
      4,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RestoreError && err.code === 'revision_mismatch', String(err));
    assert.match((err as Error).message, /revision 102 does not apply/);
    assert.equal(etcd.revision, 101);
  });

  it('stops with revision_mismatch when an applied transaction lands on another revision', async () => {
    const etcd = new ShuffledEtcd(100, mulberry32(1));
    etcd.revision = 105;
    const sender = new ReplayWindow(etcd, 4, 100);
    await sender.send({ revision: 101, compare: [], success: [{ request_put: { key: Buffer.from('a'), value: Buffer.from('101') } }], sendAfter: 100, leases: [] }, 'test');
    await assert.rejects(sender.drain(), (e: unknown) => e instanceof RestoreError && e.code === 'revision_mismatch' && /became revision 106/.test(e.message));
  });
});
