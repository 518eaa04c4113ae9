import assert from 'node:assert/strict';
import { createWriteStream, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { restorableChain, type Chain } from '../../src/snapshot/chain.js';
import { decompressStream } from '../../src/snapshot/compression.js';
import { decodeDelta, type DeltaEvent } from '../../src/snapshot/delta-format.js';
import type { SnapshotRef } from '../../src/snapshot/names.js';
import { listSnapshots } from '../../src/snapshot/snapshotter.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { RESERVED_TMP_MARK } from '../../src/snapstore/names.js';
import type { SnapStore } from '../../src/snapstore/types.js';
import type { TestCluster } from './cluster.js';

/** The store a test sidecar writes to (see `sidecarConfig`). */
export function backupStore(cluster: TestCluster): LocalStore {
  return new LocalStore(join(cluster.dir, 'backups'));
}

/** Bytes of uploads in progress in a local store (its `.ebs-tmp-` files), 0 when none. */
export function bytesBeingUploaded(cluster: TestCluster): number {
  const dir = join(cluster.dir, 'backups');
  if (!existsSync(dir)) return 0;
  let bytes = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile() && e.name.includes(RESERVED_TMP_MARK)) bytes += statSync(join(e.parentPath, e.name), { throwIfNoEntry: false })?.size ?? 0;
  }
  return bytes;
}

export async function readObject(store: SnapStore, s: SnapshotRef): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(await store.get(s.name), decompressStream(s.compression), async function (source: AsyncIterable<Buffer>) {
    for await (const c of source) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

export async function readDelta(store: SnapStore, s: SnapshotRef): Promise<DeltaEvent[]> {
  return decodeDelta(await readObject(store, s));
}

/** Decompresses a full snapshot to a file `etcdctl snapshot status/restore` can read. */
export async function saveFull(store: SnapStore, s: SnapshotRef, file: string): Promise<void> {
  await pipeline(await store.get(s.name), decompressStream(s.compression), createWriteStream(file));
}

export async function currentChain(store: SnapStore): Promise<Chain> {
  return restorableChain(await listSnapshots(store));
}

/**
 * Reads every delta of the chain and checks that, after the full snapshot, each revision up to the
 * chain's end appears, in order, with nothing skipped. Returns the events a restore would apply.
 */
export async function assertChainEvents(store: SnapStore, chain: Chain): Promise<DeltaEvent[]> {
  assert.ok(chain.full, 'no full snapshot');
  const applied: DeltaEvent[] = [];
  let through = chain.full.lastRevision;
  for (const link of chain.links) {
    const events = await readDelta(store, link.delta);
    assert.ok(events.length > 0, `${link.delta.name} is empty`);
    assert.equal((events[events.length - 1] as DeltaEvent).kv.modRevision, link.delta.lastRevision, `${link.delta.name}: last event is not its last revision`);
    for (const ev of events) {
      const rev = ev.kv.modRevision;
      if (rev <= link.skipThrough) continue;
      assert.ok(rev === through || rev === through + 1, `${link.delta.name}: revision ${rev} follows ${through}`);
      through = rev;
      applied.push(ev);
    }
  }
  assert.equal(through, chain.lastRevision);
  return applied;
}
