import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { folderDigests } from '../helpers/files.js';
import { nameProblem } from '../../src/snapstore/names.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { StoreError } from '../../src/snapstore/types.js';

const tree = folderDigests;

const HOSTILE = [
  '../escape',
  'v2/../../escape',
  '/etc/passwd',
  'v2/./Full',
  'a//b',
  'a\\..\\b',
  'a\u0000b',
  '.ebs-meta/v2/Full-00000000-00000010-1700000000.gz.json',
  'v2/Full.ebs-tmp-abc',
  '',
  'x'.repeat(2000),
];

describe('object names from clients cannot leave or corrupt the local store', () => {
  it('refuses traversal, absolute, reserved and control-character names', () => {
    for (const name of HOSTILE) assert.notEqual(nameProblem(name), undefined, JSON.stringify(name));
    assert.match(nameProblem('.ebs-meta/x') ?? '', /reserved/);
    assert.match(nameProblem('v2/a.ebs-tmp-1') ?? '', /reserved/);
    assert.equal(nameProblem('v2/.ebs-meta'), undefined, 'only the top-level folder is reserved');
  });

  it('put/get/head/delete/list with hostile names fail with invalid_name and leave the folder as it was', async () => {
    // The store one level down, so an escape by `..` would land in a folder this test watches.
    const parent = mkdtempSync(join(tmpdir(), 'ebs-names-'));
    const root = join(parent, 'store');
    const store = new LocalStore(root);
    try {
      await store.put('v2/Full-00000000-00000010-1700000000.gz', Readable.from([Buffer.from('full')]));
      const before = tree(parent);
      for (const name of HOSTILE) {
        const ops: Array<[string, () => Promise<unknown>]> = [
          ['put', () => store.put(name, Readable.from([Buffer.from('evil')]))],
          ['get', () => store.get(name)],
          ['head', () => store.head(name)],
          ['delete', () => store.delete(name)],
        ];
        for (const [op, call] of ops) {
          await assert.rejects(call(), (e: unknown) => e instanceof StoreError && e.code === 'invalid_name', `${op} ${JSON.stringify(name)}`);
        }
      }
      await assert.rejects(store.list('../'), (e: unknown) => e instanceof StoreError && e.code === 'invalid_name');
      assert.deepEqual(tree(parent), before);
    } finally {
      await store.close();
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('every name it accepts stays inside the store folder (property)', () => {
    const root = '/srv/backups';
    const segment = fc.oneof(fc.constantFrom('..', '.', '', '.ebs-meta', 'v2', '%2e%2e', '~', '\\', '\u0000'), fc.string({ maxLength: 8 }));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.boolean(), (segments, absolute) => {
        const name = `${absolute ? '/' : ''}${segments.join('/')}`;
        if (nameProblem(name) !== undefined) return;
        const path = resolve(root, ...name.split('/'));
        assert.ok(path.startsWith(`${root}/`), `${JSON.stringify(name)} -> ${path}`);
        assert.ok(!path.startsWith(`${root}/.ebs-meta/`), JSON.stringify(name));
      }),
      { numRuns: 2000 },
    );
  });
});
