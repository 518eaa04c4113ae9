/**
 * What only the Azure Blob store does, on Azurite behind the fault-injecting proxy: uploads in
 * several blocks with faults on single blocks, and each way of signing in (account key, SAS token,
 * DefaultAzureCredential) with what an operator sees when one is wrong.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { StoreError, type SnapStore } from '../../src/snapstore/index.js';
import { AZURITE, azuriteFixture, azuriteSas, withPeer } from '../helpers/peer-stores.js';
import { failingStream, randomStream, sha256Of, type StoreFixture } from '../helpers/store-fixtures.js';

const MiB = 1 << 20;
/** A block staged by an upload: PUT ...?comp=block. */
const blockPut = (req: IncomingMessage): boolean => req.method === 'PUT' && /[?&]comp=block(&|$)/.test(req.url ?? '');

async function rejection(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

withPeer(AZURITE, 'azure blob store: azblob (Azurite)', () => {
  describe('azure blob store: azblob (Azurite)', () => {
    let fx: StoreFixture;
    let store: SnapStore;
    const dir = mkdtempSync(join(tmpdir(), 'ebs-azblob-'));
    const file = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    /** The fixture's flags without its account key. */
    const keyless = (): Record<string, string> => ({ 'azure-key-file': '' });
    before(async () => {
      fx = await azuriteFixture();
      store = await fx.open();
    });
    after(async () => {
      await store?.close();
      await fx?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('12 MiB in 5 MiB blocks: a block answered with 503 and one whose connection is reset are sent again', async () => {
      fx.injectTransient?.(1, { status: 503 }, blockPut);
      fx.injectTransient?.(1, 'reset', blockPut);
      const src = randomStream(12 * MiB);
      const put = await store.put('v2/Full-blocks', src.stream, { metadata: { 'ebs-cluster-id': 'c1' } });
      assert.equal(fx.faultsLeft?.(), 0, 'both faults met a block');
      assert.equal(put.verifiedBy, 'block-md5');
      assert.equal(put.sha256, src.sha256());
      assert.deepEqual(await sha256Of(await store.get('v2/Full-blocks')), { sha256: put.sha256, size: 12 * MiB });
      assert.deepEqual((await store.head('v2/Full-blocks'))?.metadata, { 'ebs-cluster-id': 'c1' }, 'metadata keys come back as given, ours left out');
    });

    it('a source that fails after two blocks leaves no object', async () => {
      await assert.rejects(store.put('v2/Full-blocks-broken', failingStream(11 * MiB)));
      assert.equal(await store.head('v2/Full-blocks-broken'), undefined);
      assert.deepEqual((await store.list('v2/Full-blocks-broken')).objects, []);
    });

    it('a read whose server freezes mid-body fails within --store-timeout; a slow reader does not', async () => {
      const src = randomStream(64 * MiB);
      await store.put('v2/Full-frozen-read', src.stream);
      const other = await fx.open({ 'store-timeout': '1s', 'store-max-attempts': '1' });
      try {
        // Not read for longer than the timeout, so paused by backpressure: not a stall.
        const slow = await other.get('v2/Full-frozen-read');
        await new Promise((r) => setTimeout(r, 2_500));
        assert.deepEqual(await sha256Of(slow), { sha256: src.sha256(), size: 64 * MiB });
        const body = await other.get('v2/Full-frozen-read');
        const it = body[Symbol.asyncIterator]();
        await it.next();
        fx.freeze?.();
        const started = performance.now();
        try {
          await assert.rejects(
            (async () => {
              for (let r = await it.next(); !r.done; r = await it.next());
            })(),
            (err: unknown) => err instanceof StoreError && err.code === 'timeout' && /no bytes within 1000 ms/.test(err.message),
          );
        } finally {
          fx.thaw?.();
        }
        assert.ok(performance.now() - started < 3_000, `took ${Math.round(performance.now() - started)} ms`);
      } finally {
        await other.close();
      }
    });

    it('a SAS token from --azure-sas-file signs every request; one that may only read cannot write', async () => {
      const sas = await fx.open({ ...keyless(), 'azure-account': '', 'azure-sas-file': file('rw.sas', `?${azuriteSas('racwdl')}\n`) });
      try {
        const put = await sas.put('sas/a', Readable.from([Buffer.from('signed by a SAS')]));
        assert.equal((await sha256Of(await sas.get('sas/a'))).sha256, put.sha256);
      } finally {
        await sas.close();
      }
      const token = azuriteSas('rl');
      const readOnly = await fx.open({ ...keyless(), 'azure-account': '', 'azure-sas-file': file('ro.sas', token) });
      try {
        assert.equal((await readOnly.head('sas/a'))?.size, 15);
        const err = await rejection(readOnly.put('sas/b', Readable.from([Buffer.from('x')])));
        assert.equal(err.code, 'access_denied', err.message);
        const sig = new URLSearchParams(token).get('sig') as string;
        assert.ok(!err.message.includes(sig) && !err.message.includes(encodeURIComponent(sig)), 'the signature is not in the error');
      } finally {
        await readOnly.close();
      }
    });

    it('a wrong account key is bad_credentials, naming the store and never the key', async () => {
      const wrongKey = Buffer.alloc(64, 7).toString('base64');
      const bad = await fx.open({ 'azure-key-file': file('wrong.key', wrongKey) });
      try {
        const err = await rejection(bad.get('anything'));
        assert.equal(err.code, 'bad_credentials', err.message);
        assert.match(err.message, /^azblob:\/\/ebs-contract\/backups\/main .*failed to authenticate/);
        assert.ok(!err.message.includes(wrongKey));
        // A HEAD answer has no body: Azurite's error code alone cannot tell a wrong key from a missing permission.
        const head = await rejection(bad.head('anything'));
        assert.equal(head.code, 'access_denied', head.message);
        assert.match(head.message, /AuthorizationFailure: HTTP 403: the key or SAS is wrong, or lacks a permission/);
      } finally {
        await bad.close();
      }
    });

    it('credential files that hold something else are refused when the store opens, naming the flag', async () => {
      const notSas = await rejection(fx.open({ ...keyless(), 'azure-sas-file': file('not.sas', 'sv=2024-01-01&sp=r') }));
      assert.equal(notSas.code, 'config');
      assert.match(notSas.message, /--azure-sas-file .*not\.sas: not a SAS token \(it has no sig= field\)/);
      const notKey = await rejection(fx.open({ 'azure-key-file': file('not.key', 'my password') }));
      assert.match(notKey.message, /--azure-key-file .*not\.key: not an account key/);
      assert.ok(!notKey.message.includes('my password'));
      const empty = await rejection(fx.open({ 'azure-key-file': file('empty.key', '\n') }));
      assert.match(empty.message, /--azure-key-file .*empty\.key: the file is empty/);
    });

    it('with neither key nor SAS, DefaultAzureCredential is used: over http it is refused with the reason', async () => {
      const identity = await fx.open(keyless());
      try {
        const err = await rejection(identity.head('anything'));
        assert.equal(err.code, 'config', err.message);
        assert.match(err.message, /Azure AD credentials need an https:\/\/ --azure-endpoint/);
      } finally {
        await identity.close();
      }
    });
  });
});
