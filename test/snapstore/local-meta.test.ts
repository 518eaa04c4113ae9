import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { legacyMetaFile, metaFile } from '../../src/snapstore/local-meta.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { StoreError } from '../../src/snapstore/types.js';

const SNAPSHOTS = ['v2/Full-00000000-00000010-1700000000.gz', 'v2/Incr-00000011-00000020-1700000010.gz', 'v2/Full-00000000-00000020-1700000020.gz.final'];

/** Every file below `dir`, relative to it, `/`-separated. */
function walk(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name), root) : [relative(root, join(dir, e.name)).split('/').join('/')]));
}

/**
 * What gardener's Local provider takes for a snapshot when pointed at the folder: every file whose
 * path holds `v1/` or `v2/` (its List walks the folder and parses each such path).
 */
function gardenerSees(root: string): string[] {
  return walk(root)
    .filter((p) => p.includes('v1/') || p.includes('v2/'))
    .sort();
}

async function put(store: LocalStore, name: string, body: string, metadata: Record<string, string> = {}): Promise<void> {
  await store.put(name, Readable.from([Buffer.from(body)]), { metadata });
}

async function readAll(s: Readable): Promise<string> {
  let out = '';
  for await (const c of s) out += (c as Buffer).toString();
  return out;
}

describe('local store checksums and a gardener Local provider on the same folder', () => {
  const dirs: string[] = [];
  const fresh = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'ebs-meta-'));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('gardener sees exactly the snapshots, not their checksums, the heartbeats or the claim', async () => {
    const root = fresh();
    const store = new LocalStore(root);
    for (const name of SNAPSHOTS) await put(store, name, name, { 'ebs-cluster-id': 'abc' });
    await put(store, 'members/m1.json', '{}');
    await store.putIfVersion('recovery/claim.json', Buffer.from('{"epoch":1}'), undefined);
    assert.deepEqual(gardenerSees(root), [...SNAPSHOTS].sort());
    assert.ok(walk(root).includes(metaFile(SNAPSHOTS[0] as string)), 'the checksum is where metaFile says');
    assert.equal((await store.head(SNAPSHOTS[0] as string))?.metadata['ebs-cluster-id'], 'abc');
  });

  it("checksums an older release wrote are still checked, and moved out of gardener's sight when the store is opened", async () => {
    const root = fresh();
    const store = new LocalStore(root);
    for (const name of SNAPSHOTS) await put(store, name, name, { 'ebs-cluster-id': 'abc' });
    // The older layout: the checksum beside a copy of the object's own path.
    for (const name of SNAPSHOTS) {
      const legacy = join(root, legacyMetaFile(name));
      mkdirSync(dirname(legacy), { recursive: true });
      renameSync(join(root, metaFile(name)), legacy);
    }
    assert.equal(gardenerSees(root).length, SNAPSHOTS.length * 2, 'the premise: gardener saw each snapshot twice');
    const [victim, ...rest] = SNAPSHOTS as [string, ...string[]];
    assert.equal((await store.head(victim))?.metadata['ebs-cluster-id'], 'abc');
    writeFileSync(join(root, ...victim.split('/')), victim.replace('Full', 'Fell'));
    await assert.rejects(readAll(await store.get(victim)), (err: unknown) => err instanceof StoreError && err.code === 'checksum_mismatch');

    assert.equal(await store.migrateMeta(), SNAPSHOTS.length);
    assert.deepEqual(gardenerSees(root), [...SNAPSHOTS].sort());
    assert.equal(await store.migrateMeta(), 0, 'a second pass has nothing to move');
    await assert.rejects(readAll(await store.get(victim)), (err: unknown) => err instanceof StoreError && err.code === 'checksum_mismatch');
    for (const name of rest) {
      assert.equal(await readAll(await store.get(name)), name);
      assert.equal((await store.head(name))?.metadata['ebs-cluster-id'], 'abc');
    }
    await store.delete(victim);
    assert.ok(!walk(root).some((p) => p.includes('Full-00000000-00000010')), 'delete removes the object and its checksum');
  });
});
