import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { advanceClaim, CLAIM_OBJECT, readClaim } from '../../src/initializer/claim.js';
import { LocalStore } from '../../src/snapstore/local.js';

async function withStore(fn: (store: LocalStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-claim-'));
  const store = new LocalStore(dir);
  try {
    await fn(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the recovery claim in a real (local) store', () => {
  it('is absent at first, taken once per epoch, and advanced only from the version read', async () => {
    await withStore(async (store) => {
      assert.deepEqual(await readClaim(store), {});
      const first = await advanceClaim(store, { epoch: 1, holder: 'm1', source: 'local-copy', state: 'claimed' }, undefined);
      assert.ok(first);
      // A second member that read "no claim" at the same time loses.
      assert.equal(await advanceClaim(store, { epoch: 1, holder: 'm2', source: 'backups', state: 'claimed' }, undefined), undefined);
      const read = await readClaim(store);
      assert.deepEqual(read.claim, { epoch: 1, holder: 'm1', source: 'local-copy', state: 'claimed' });
      assert.equal(read.version, first);
      const done = await advanceClaim(store, { epoch: 1, holder: 'm1', source: 'local-copy', state: 'done' }, first);
      assert.ok(done);
      // The holder's stale version cannot overwrite what came after it.
      assert.equal(await advanceClaim(store, { epoch: 2, holder: 'm1', source: 'backups', state: 'claimed' }, first), undefined);
      assert.equal((await readClaim(store)).claim?.state, 'done');
    });
  });

  it('many members racing for the next epoch: exactly one holds it', async () => {
    await withStore(async (store) => {
      const won = await Promise.all(['m1', 'm2', 'm3', 'm4', 'm5'].map((holder) => advanceClaim(store, { epoch: 1, holder, source: 'backups', state: 'claimed' }, undefined)));
      assert.equal(won.filter((v) => v !== undefined).length, 1);
    });
  });

  it('an object that is not a claim is named, never taken for one', async () => {
    await withStore(async (store) => {
      await store.putIfVersion(CLAIM_OBJECT, Buffer.from('{"epoch":"two"}'), undefined);
      await assert.rejects(readClaim(store), /recovery\/claim.json is not a recovery claim \(\/\w+: /);
      const v = (await store.readVersioned(CLAIM_OBJECT))?.version;
      await store.putIfVersion(CLAIM_OBJECT, Buffer.from('{'), v);
      await assert.rejects(readClaim(store), /recovery\/claim.json is not a recovery claim \(not JSON/);
    });
  });
});
