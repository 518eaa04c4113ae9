import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { snapshotName, type SnapshotKind } from '../../src/snapshot/names.js';
import { SecondarySync, type SecondarySyncDeps } from '../../src/snapshot/secondary-sync.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { LocalStore } from '../../src/snapstore/local.js';
import type { SnapStore } from '../../src/snapstore/types.js';
import { createLogger } from '../../src/logger.js';
import { eventually } from '../helpers/cluster.js';

const work = mkdtempSync(join(tmpdir(), 'ebs-secondary-'));
after(() => rmSync(work, { recursive: true, force: true }));
let stores = 0;
const folder = (): LocalStore => new LocalStore(join(work, `store-${++stores}`));
const log = createLogger('silent');

async function upload(store: SnapStore, kind: SnapshotKind, startRevision: number, lastRevision: number, createdAt: Date): Promise<string> {
  const name = snapshotName({ kind, startRevision, lastRevision, createdAt, compression: 'none' });
  await store.put(name, Readable.from([Buffer.from(`${kind} ${startRevision}-${lastRevision}`)]));
  return name;
}

/** A store that counts the requests a sync makes, and can be made to fail every call. */
function watched(store: SnapStore): SnapStore & { calls: Map<string, number>; down: boolean } {
  const calls = new Map<string, number>();
  const spy = {
    calls,
    down: false,
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop in spy) return spy[prop as keyof typeof spy];
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        if (spy.down) return Promise.reject(new Error(`${target.url}: unreachable (test)`));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
    set(_target, prop, value) {
      if (prop === 'down') spy.down = value as boolean;
      return true;
    },
  }) as SnapStore & { calls: Map<string, number>; down: boolean };
}

function syncOf(primary: SnapStore, secondary: SnapStore, more: Partial<SecondarySyncDeps> = {}, retention = false): SecondarySync {
  return new SecondarySync(
    { primary, secondary, leads: () => true, log, ...more },
    { periodMs: 0, ...(retention ? { gc: { retention: { policy: 'limit', maxBackups: 1 }, storeRetentionMs: 0 } } : {}) },
  );
}

const names = async (store: SnapStore): Promise<string[]> => (await listSnapshots(store)).map((s) => s.name).sort();

describe('secondary store sync', () => {
  it('copies what the secondary lacks, oldest first; a second sync costs two listings and no request per object', async () => {
    const primary = folder();
    const secondary = watched(folder());
    const t = new Date('2026-12-01T10:00:00Z');
    await upload(primary, 'full', 0, 10, t);
    await upload(primary, 'delta', 11, 20, new Date(t.getTime() + 1000));
    const sync = syncOf(primary, secondary);
    sync.kick();
    await eventually('first sync', async () => sync.status().lastSuccess, 10_000, 20);
    assert.equal(sync.status().lastSuccess?.copied, 2);
    assert.deepEqual(await names(secondary), await names(primary));

    await upload(primary, 'delta', 21, 30, new Date(t.getTime() + 2000));
    secondary.calls.clear();
    const before = sync.status().lastSuccess;
    sync.kick();
    await eventually('second sync', async () => (sync.status().lastSuccess !== before && !sync.status().running ? sync.status().lastSuccess : undefined), 10_000, 20);
    assert.deepEqual([sync.status().lastSuccess?.copied, sync.status().lastSuccess?.skipped], [1, 2]);
    assert.deepEqual(await names(secondary), await names(primary));
    assert.equal(secondary.calls.get('head') ?? 0, 0, 'objects already held cost no HEAD');
    assert.equal(secondary.calls.get('put'), 1);
    await sync.stop();
  });

  it('a secondary that is down fails the sync, counted, without touching the primary; the next kick catches up', async () => {
    const primary = folder();
    const secondary = watched(folder());
    await upload(primary, 'full', 0, 10, new Date('2026-12-01T10:00:00Z'));
    const failures: string[] = [];
    const sync = syncOf(primary, secondary, { observer: { synced: () => {}, failed: (e) => failures.push(e.message) } });
    secondary.down = true;
    sync.kick();
    await eventually('failed sync', async () => (sync.status().failuresInARow === 1 && !sync.status().running ? true : undefined), 10_000, 20);
    assert.match(sync.status().lastError?.message ?? '', /unreachable \(test\)/);
    assert.equal(failures.length, 1);
    assert.equal((await names(primary)).length, 1, 'the primary keeps its snapshot');
    secondary.down = false;
    sync.kick();
    await eventually('caught up', async () => (sync.status().failuresInARow === 0 ? sync.status().lastSuccess : undefined), 10_000, 20);
    assert.deepEqual(await names(secondary), await names(primary));
    await sync.stop();
  });

  it('kicks during a sync make one more sync, not one per kick; a sidecar that does not lead never syncs', async () => {
    const primary = folder();
    const secondary = watched(folder());
    await upload(primary, 'full', 0, 10, new Date('2026-12-01T10:00:00Z'));
    let runs = 0;
    const sync = syncOf(primary, secondary, { observer: { synced: () => runs++, failed: () => {} } });
    for (let i = 0; i < 20; i++) sync.kick();
    await eventually('runs settle', async () => (sync.status().running ? undefined : true), 10_000, 20);
    assert.equal(runs, 2, 'the first kick runs, the 19 during it coalesce into one more');

    let leading = false;
    const idle = watched(folder());
    const follower = syncOf(primary, idle, { leads: () => leading });
    follower.kick();
    assert.equal(follower.status().running, false);
    assert.equal(idle.calls.size, 0, 'no request from a sidecar that is not the backup leader');
    leading = true;
    follower.kick();
    await eventually('leader syncs', async () => follower.status().lastSuccess, 10_000, 20);
    await Promise.all([sync.stop(), follower.stop()]);
  });

  it('never mirrors a deletion made in the primary (a bad script emptied it): the secondary keeps its copy', async () => {
    const primary = folder();
    const secondary = folder();
    const old = await upload(primary, 'full', 0, 10, new Date('2026-12-01T10:00:00Z'));
    const sync = syncOf(primary, secondary);
    sync.kick();
    await eventually('first sync', async () => sync.status().lastSuccess, 10_000, 20);
    await primary.delete(old);
    const first = sync.status().lastSuccess;
    sync.kick();
    await eventually('second sync', async () => (sync.status().lastSuccess !== first && !sync.status().running ? sync.status().lastSuccess : undefined), 10_000, 20);
    assert.deepEqual(await names(secondary), [old]);
    await sync.stop();
  });

  it("applies the primary's retention policy to the secondary's own listing", async () => {
    const primary = folder();
    const secondary = folder();
    const old = await upload(primary, 'full', 0, 10, new Date('2026-11-01T10:00:00Z'));
    const sync = syncOf(primary, secondary, { now: () => new Date('2026-12-01T10:00:00Z') }, true);
    sync.kick();
    await eventually('first sync', async () => sync.status().lastSuccess, 10_000, 20);
    assert.deepEqual(await names(secondary), [old], 'the only full snapshot is kept');
    const newer = await upload(primary, 'full', 0, 50, new Date('2026-12-01T09:59:00Z'));
    const first = sync.status().lastSuccess;
    sync.kick();
    await eventually('second sync', async () => (sync.status().lastSuccess !== first && !sync.status().running ? sync.status().lastSuccess : undefined), 10_000, 20);
    // --max-backups 1: the newest full snapshot stays, the older one goes, as it does in the primary.
    assert.deepEqual(await names(secondary), [newer]);
    assert.equal(sync.status().lastSuccess?.deleted, 1);
    // The primary still holds the old one (it cannot delete: a hold, no permission): not copied back.
    const second = sync.status().lastSuccess;
    sync.kick();
    await eventually('third sync', async () => (sync.status().lastSuccess !== second && !sync.status().running ? sync.status().lastSuccess : undefined), 10_000, 20);
    assert.deepEqual([sync.status().lastSuccess?.copied, sync.status().lastSuccess?.deleted], [0, 0]);
    assert.deepEqual(await names(secondary), [newer]);
    await sync.stop();
  });
});
