/**
 * The guarded, pipelined replay against real etcds: random histories written to a source etcd
 * (puts, overwrites, deletes, multi-key transactions, prefix deletes, deletes then recreates, keys
 * on leases and lease revokes) are replayed from the source's own watch events into a temporary
 * etcd with random windows and random delays before each transaction reaches etcd (so they arrive
 * out of order), and every key must come out as in the source at the same revision. Both etcds run
 * the whole time: each run starts where the last one left them, equal.
 *
 * FC_SEED=<n> replays a run of seeds; FC_RUNS=<n> changes how many.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3, type IRequestOp } from 'etcd3';
import fc from 'fast-check';
import { EtcdProcess } from '../../src/etcd/process.js';
import { freeLoopbackPort, TemporaryEtcd, type LeaseKeeper } from '../../src/etcd/temporary.js';
import { KeyspaceWatch, type WatchedEvent } from '../../src/etcd/watch.js';
import type { RevisionBatch } from '../../src/restore/plan.js';
import { BatchReplayer } from '../../src/restore/replay.js';
import { eventually } from '../helpers/cluster.js';
import { mulberry32 } from '../helpers/random.js';
import { keyspaceAt } from '../helpers/replay.js';
import { capturingLogger } from '../helpers/sidecar.js';

const KEYS = 10;
const key = (i: number): string => `/p/k${i}`;

type Op = { kind: 'put'; key: number; lease: number | undefined; bytes: number } | { kind: 'delete'; key: number };
type Step = { kind: 'txn'; ops: Op[] } | { kind: 'deletePrefix'; key: number } | { kind: 'grant' } | { kind: 'revoke'; lease: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('put' as const), key: fc.nat(KEYS - 1), lease: fc.option(fc.nat(3), { nil: undefined, freq: 3 }), bytes: fc.nat(40) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.nat(KEYS - 1) }) },
);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('txn' as const), ops: fc.array(op, { minLength: 1, maxLength: 4 }) }) },
  // /p/k1 takes /p/k1 and nothing else of the pool's /p/k0-9; /p/k is every key.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deletePrefix' as const), key: fc.constantFrom(1, -1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('grant' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke' as const), lease: fc.nat(3) }) },
);

describe('guarded pipelined replay of random histories into a real etcd', { timeout: 240_000 }, () => {
  const { log } = capturingLogger('warn');
  let dir: string;
  let sourceEtcd: EtcdProcess;
  let source: Etcd3;
  let temp: TemporaryEtcd;
  let keeper: LeaseKeeper;
  let watch: KeyspaceWatch;
  const events: WatchedEvent[] = [];
  /** Leases granted in the source and not revoked. */
  const leases: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebs-replay-prop-'));
    const [c, p] = [await freeLoopbackPort(), await freeLoopbackPort()];
    const clientURL = `http://127.0.0.1:${c}`;
    const peerURL = `http://127.0.0.1:${p}`;
    sourceEtcd = new EtcdProcess({
      name: 'src',
      dataDir: join(dir, 'src'),
      listenClientUrls: [clientURL],
      advertiseClientUrls: [clientURL],
      listenPeerUrls: [peerURL],
      initialAdvertisePeerUrls: [peerURL],
      initialCluster: `src=${peerURL}`,
      initialClusterState: 'new',
      initialClusterToken: 'src',
      logFile: join(dir, 'src.log'),
      extraArgs: ['--unsafe-no-fsync'],
    });
    sourceEtcd.start();
    source = new Etcd3({ hosts: [clientURL] });
    await eventually('source etcd up', async () => (await source.maintenance.status().catch(() => undefined)) ?? undefined, 30_000);
    // Both start empty at revision 1: the "full snapshot" is the empty keyspace.
    temp = await TemporaryEtcd.start({ dataDir: join(dir, 'temp'), name: 'temp', peerPort: await freeLoopbackPort(), logFile: join(dir, 'temp.log'), log });
    keeper = await temp.keepLeasesAlive(log);
    assert.equal(await temp.revision(), 1);
    assert.equal(Number((await source.maintenance.status()).header.revision), 1);
    watch = await KeyspaceWatch.open(source, 2, { events: (evs) => events.push(...evs), ended: (end) => log.error({ end }, 'source watch ended') });
  });

  after(async () => {
    await watch?.close();
    source?.close();
    await temp?.stop();
    await sourceEtcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Writes the steps to the source; returns its revision after them. */
  async function write(steps: Step[]): Promise<number> {
    for (const s of steps) {
      if (s.kind === 'grant') {
        leases.push((await source.leaseClient.leaseGrant({ TTL: 3600 })).ID);
      } else if (s.kind === 'revoke') {
        const id = leases.splice(s.lease % Math.max(1, leases.length), 1)[0];
        // Deletes every key on it in one revision (a delete-only, often multi-key, revision).
        if (id) await source.leaseClient.leaseRevoke({ ID: id });
      } else if (s.kind === 'deletePrefix') {
        await source.kv.deleteRange({ key: Buffer.from(s.key < 0 ? '/p/k' : key(s.key)), range_end: Buffer.from(s.key < 0 ? '/p/l' : `${key(s.key)}\0`) });
      } else {
        // One op per key: etcd refuses a transaction that names a key twice.
        const seen = new Set<number>();
        const success: IRequestOp[] = [];
        for (const o of s.ops) {
          if (seen.has(o.key)) continue;
          seen.add(o.key);
          if (o.kind === 'delete') {
            success.push({ request_delete_range: { key: Buffer.from(key(o.key)) } });
          } else {
            const lease = o.lease === undefined || leases.length === 0 ? undefined : leases[o.lease % leases.length];
            const value = Buffer.from('v'.repeat(o.bytes) + String(Math.random()));
            success.push({ request_put: lease ? { key: Buffer.from(key(o.key)), value, lease } : { key: Buffer.from(key(o.key)), value } });
          }
        }
        // A transaction of deletes of absent keys writes nothing and makes no revision, as in any cluster.
        await source.kv.txn({ compare: [], success, failure: [] });
      }
    }
    return Number((await source.maintenance.status()).header.revision);
  }

  function batches(from: number, to: number): RevisionBatch[] {
    const out: RevisionBatch[] = [];
    for (const e of events) {
      if (e.modRevision <= from || e.modRevision > to) continue;
      const ev = { type: e.type, kv: { key: e.key, value: e.value, createRevision: e.createRevision, modRevision: e.modRevision, version: e.version, lease: e.lease }, time: new Date().toISOString() };
      const last = out[out.length - 1];
      if (last && last.revision === e.modRevision) last.events.push(ev);
      else out.push({ revision: e.modRevision, events: [ev] });
    }
    return out;
  }

  it('every key, value, revision, version and lease of the source, whatever the window and arrival order', async () => {
    const seed = Number(process.env['FC_SEED'] ?? Date.now() % 2 ** 31);
    const numRuns = Number(process.env['FC_RUNS'] ?? 100);
    console.log(`# replay property: FC_SEED=${seed} FC_RUNS=${numRuns}`);
    let refused = 0;
    let sent = 0;
    let revisions = 0;
    let start = 1;
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 150, size: 'max' }),
        fc.integer({ min: 1, max: 32 }),
        fc.nat(),
        fc.integer({ min: 0, max: 4 }),
        async (steps, window, delaySeed, maxDelayMs) => {
          const end = await write(steps);
          await eventually('the source watch reached the end', async () => (end === start || (events.at(-1)?.modRevision ?? 0) >= end ? true : undefined), 10_000, 10);
          const todo = batches(start, end);
          assert.equal(todo.length, end - start, 'a revision without events');
          const random = mulberry32(delaySeed);
          const delayed = {
            guardedTxn: async (compare: Parameters<TemporaryEtcd['guardedTxn']>[0], ops: Parameters<TemporaryEtcd['guardedTxn']>[1]) => {
              const ms = Math.floor(random() * (maxDelayMs + 1));
              if (ms > 0) await new Promise((r) => setTimeout(r, ms));
              const res = await temp.guardedTxn(compare, ops);
              if (!res.succeeded) refused++;
              return res;
            },
          };
          const replayer = new BatchReplayer(delayed, keeper, start, { window });
          try {
            for (const b of todo) await replayer.send(b, `run from ${start}`);
            assert.equal(await replayer.drain(), end);
          } finally {
            await replayer.settle();
          }
          sent += replayer.counts.sent;
          revisions += todo.length;
          assert.equal(await temp.revision(), end, 'the temporary etcd is not at the source revision');
          assert.deepEqual(await keyspaceAt(temp.client, end, { leases: true }), await keyspaceAt(source, end, { leases: true }));
          start = end;
        },
      ),
      // Each run builds on the etcds the previous one left: shrinking would start from a diverged pair.
      { seed, numRuns, endOnFailure: true },
    );
    console.log(`# ${revisions} revisions replayed, ${sent} transactions sent, ${refused} refused for arriving before their predecessor`);
    assert.ok(refused > 0, 'no transaction ever arrived before its predecessor: the test proved nothing about the guards');
  });
});
