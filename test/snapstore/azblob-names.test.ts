import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockId, containerNameProblem, decodeMetaKey, encodeMetaKey, fromAzureMetadata, SHA256_META, toAzureMetadata, WRITE_ID_META } from '../../src/snapstore/azblob-names.js';

describe('Azure metadata names', () => {
  it('keys the sidecar uses become C# identifiers and come back unchanged', () => {
    for (const key of ['ebs-cluster-id', 'ebs-db-size', 'kind', 'db-sha256', 'ebs-copied-from', '1st', 'Upper', 'under_score', 'ünïcode']) {
      const name = encodeMetaKey(key);
      assert.match(name, /^[a-z_][a-z0-9_]*$/, `${key} -> ${name}`);
      // Azure hands names back lower-cased.
      assert.equal(decodeMetaKey(name.toLowerCase()), key);
    }
    assert.equal(encodeMetaKey('ebs-cluster-id'), 'ebs_2dcluster_2did');
  });

  it("a caller's key never lands on the store's own names; those never reach the caller", () => {
    const stored = toAzureMetadata({ ebs_sha256: 'mine', 'ebs-writeid': 'mine too' }, { [SHA256_META]: 'abc', [WRITE_ID_META]: 'w1' });
    assert.equal(stored[SHA256_META], 'abc');
    assert.deepEqual(fromAzureMetadata(stored), { ebs_sha256: 'mine', 'ebs-writeid': 'mine too' });
  });

  it('names another tool wrote are shown as they are', () => {
    assert.equal(decodeMetaKey('my_name'), undefined);
    assert.deepEqual(fromAzureMetadata({ my_name: 'x', hdi_isfolder: 'true' }), { my_name: 'x', hdi_isfolder: 'true' });
  });
});

describe('Azure block ids and container names', () => {
  it('block ids of one upload are base64 of one length, in order', () => {
    const ids = [0, 1, 9, 10, 49_999].map((i) => blockId('0123456789abcdef', i));
    assert.equal(new Set(ids.map((id) => id.length)).size, 1);
    assert.deepEqual(
      ids.map((id) => Buffer.from(id, 'base64').toString()),
      ['0123456789abcdef-000000', '0123456789abcdef-000001', '0123456789abcdef-000009', '0123456789abcdef-000010', '0123456789abcdef-049999'],
    );
  });

  it("container names follow Azure's rules", () => {
    assert.equal(containerNameProblem('etcd-backups'), undefined);
    assert.match(containerNameProblem('ab') ?? '', /3 to 63/);
    assert.match(containerNameProblem('Backups') ?? '', /lowercase/);
    assert.match(containerNameProblem('my_backups') ?? '', /lowercase letters, digits and hyphens/);
    assert.match(containerNameProblem('a--b') ?? '', /no two hyphens/);
    assert.match(containerNameProblem('-ab') ?? '', /start and end/);
  });
});
