import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { DeltaReader, readAllEvents } from '../../src/restore/delta-reader.js';
import { DeltaPrefetcher, fetchDelta, fetchFullSnapshot } from '../../src/restore/fetch.js';
import { RestoreError } from '../../src/restore/plan.js';
import { compressBuffer } from '../../src/snapshot/compression.js';
import { encodeDelta, type DeltaEvent } from '../../src/snapshot/delta-format.js';
import { parseSnapshotName, snapshotName, type SnapshotRef } from '../../src/snapshot/names.js';
import { LocalStore } from '../../src/snapstore/local.js';
import type { SnapStore } from '../../src/snapstore/types.js';

const root = mkdtempSync(join(tmpdir(), 'ebs-restore-fetch-'));
after(() => rmSync(root, { recursive: true, force: true }));

function events(from: number, n: number): DeltaEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    type: 'put' as const,
    kv: { key: Buffer.from(`/k/${from + i}`), value: randomBytes(8), createRevision: from + i, modRevision: from + i, version: 1, lease: '0' },
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, from + i)).toISOString(),
  }));
}

async function putDelta(store: SnapStore, from: number, payload: Buffer, last: number): Promise<SnapshotRef> {
  const name = snapshotName({ kind: 'delta', startRevision: from, lastRevision: last, createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, from)), compression: 'gzip' });
  await store.put(name, Readable.from([await compressBuffer('gzip', payload)]));
  return parseSnapshotName(name) as SnapshotRef;
}

function refused(err: unknown, code: string, pattern: RegExp): true {
  assert.ok(err instanceof RestoreError, String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, pattern);
  return true;
}

describe('fetching a chain', () => {
  it('prefetches at most `ahead` deltas beyond the one taken, and hands them out in order', async () => {
    const store = new LocalStore(join(root, 'prefetch'));
    const refs: SnapshotRef[] = [];
    for (let i = 0; i < 10; i++) refs.push(await putDelta(store, 1 + i * 5, encodeDelta(events(1 + i * 5, 5)), 5 + i * 5));
    let started = 0;
    const counting = new Proxy(store, {
      get: (target, prop, receiver) => {
        if (prop === 'get') return (name: string, opts?: { signal?: AbortSignal }) => (started++, target.get(name, opts));
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const prefetch = new DeltaPrefetcher(counting, refs, { deltas: 3 });
    for (let i = 0; i < refs.length; i++) {
      const evs = await readAllEvents(prefetch.open(i));
      assert.equal(evs[0]?.kv.modRevision, 1 + i * 5);
      // Taken: i + 1; fetched ahead: at most 3 more.
      assert.ok(started <= Math.min(refs.length, i + 1 + 3), `after taking ${i + 1}, ${started} fetches were started`);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(started, refs.length);
  });

  it('reads ahead only while the stored bytes held stay within the byte limit; a delta larger than it streams', async () => {
    const store = new LocalStore(join(root, 'prefetch-bytes'));
    const refs: SnapshotRef[] = [];
    const sizes = new Map<string, number>();
    for (let i = 0; i < 8; i++) {
      refs.push(await putDelta(store, 1 + i * 5, encodeDelta(events(1 + i * 5, 5)), 5 + i * 5));
      sizes.set((refs[i] as SnapshotRef).name, i === 5 ? 10_000 : 1000);
    }
    const started: string[] = [];
    const counting = new Proxy(store, {
      get: (target, prop, receiver) => {
        if (prop === 'get') return (name: string, opts?: { signal?: AbortSignal }) => (started.push(name), target.get(name, opts));
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    // 2,500 bytes: the one replayed and one more (1,000 each), never a third.
    const prefetch = new DeltaPrefetcher(counting, refs, { deltas: 4, bytes: 2500 }, undefined, sizes);
    for (let i = 0; i < refs.length; i++) {
      const reader = prefetch.open(i);
      const ahead = started.length - (i + 1);
      // Delta 5 (10,000 bytes) is never read ahead, nor anything behind it while it waits.
      assert.ok(ahead <= (i === 4 ? 0 : 1), `replaying ${i}: ${ahead} read ahead (${started.join(', ')})`);
      const evs = await readAllEvents(reader);
      assert.equal(evs[0]?.kv.modRevision, 1 + i * 5);
    }
    prefetch.close();
    assert.equal(started.length, refs.length);
  });

  it("refuses a delta whose sha256 trailer does not match, even when the store's own checksum is intact (an anchor bucket)", async () => {
    const store = new LocalStore(join(root, 'trailer'));
    const good = encodeDelta(events(1, 3));
    const bad = Buffer.from(good);
    bad[5] = (bad[5] as number) ^ 1;
    const ref = await putDelta(store, 1, bad, 3);
    await assert.rejects(fetchDelta(store, ref), (err) => refused(err, 'corrupt', /checksum mismatch/));
  });

  it('a delta left part way still has its trailer checked, and a damaged one explains the replay error it caused', async () => {
    const good = encodeDelta(events(1, 2000));
    const bad = Buffer.from(good);
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
    const [goodStore, badStore] = [new LocalStore(join(root, 'part-way-good')), new LocalStore(join(root, 'part-way-bad'))];
    const goodRef = await putDelta(goodStore, 1, good, 2000);
    const badRef = await putDelta(badStore, 1, bad, 2000);
    // 4 KiB decoded ahead at most: most of the delta is still to come when the reader stops.
    const open = async (ref: SnapshotRef): Promise<DeltaReader> => new DeltaReader(ref, await (ref === goodRef ? goodStore : badStore).get(ref.name), () => {}, 4096);
    const first = async (reader: DeltaReader): Promise<void> => {
      for await (const ev of reader.events()) {
        assert.equal(ev.kv.modRevision, 1);
        break;
      }
    };
    const fine = await open(goodRef);
    await first(fine);
    await fine.finish();
    fine.close();
    const damaged = await open(badRef);
    await first(damaged);
    await assert.rejects(damaged.finish(), (err) => refused(err, 'corrupt', /checksum mismatch/));
    damaged.close();
    const gap = new RestoreError('gap', 'revisions 7-9 are missing');
    const explained = await open(badRef);
    await first(explained);
    assert.ok(refused(await explained.explain(gap), 'corrupt', /checksum mismatch/));
    explained.close();
    const unexplained = await open(goodRef);
    await first(unexplained);
    assert.equal(await unexplained.explain(gap), gap);
    unexplained.close();
  });

  it('refuses a full snapshot whose sha256 trailer does not match its db', async () => {
    const store = new LocalStore(join(root, 'full'));
    const db = randomBytes(64 * 1024);
    const trailer = createHash('sha256').update(Buffer.from('another db')).digest();
    const name = snapshotName({ kind: 'full', startRevision: 0, lastRevision: 10, createdAt: new Date(), compression: 'none' });
    await store.put(name, Readable.from([Buffer.concat([db, trailer])]));
    await assert.rejects(fetchFullSnapshot(store, parseSnapshotName(name) as SnapshotRef, join(root, 'full.db')), (err) => refused(err, 'corrupt', /damaged/));
  });
});
