import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveAzureAuth, type AzureAuthInput } from '../../src/snapstore/azblob-auth.js';
import { StoreError } from '../../src/snapstore/index.js';

const KEY = Buffer.alloc(64, 1).toString('base64');
const SAS = 'sv=2024-08-04&ss=b&srt=sco&sp=racwdl&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D';
const base: AzureAuthInput = { store: 'azblob://etcd/p', account: '', keyFile: '', sasFile: '', endpoint: '', env: {} };
/** Files as the test names them: the path is the content. */
const files = (_flag: string, path: string): string => path;
const auth = (i: Partial<AzureAuthInput>): ReturnType<typeof resolveAzureAuth> => resolveAzureAuth({ ...base, ...i }, files);

function refused(i: Partial<AzureAuthInput>, message: RegExp): void {
  assert.throws(
    () => auth(i),
    (err: unknown) => err instanceof StoreError && err.code === 'config' && message.test(err.message) && err.message.startsWith('azblob://etcd/p: '),
  );
}

describe('Azure credentials: which one, from where', () => {
  it('a flag beats the environment, a SAS beats a key, and with neither DefaultAzureCredential', () => {
    const env = { AZURE_STORAGE_ACCOUNT: 'envacct', AZURE_STORAGE_KEY: KEY, AZURE_STORAGE_SAS_TOKEN: `?${SAS}` };
    assert.deepEqual(auth({ env }).credential, { kind: 'sas', token: SAS, source: 'AZURE_STORAGE_SAS_TOKEN' });
    assert.deepEqual(auth({ env, keyFile: KEY }).credential, { kind: 'key', account: 'envacct', key: KEY, source: `--azure-key-file ${KEY}` });
    assert.equal(auth({ env: { AZURE_STORAGE_ACCOUNT: 'envacct', AZURE_STORAGE_KEY: KEY } }).credential.kind, 'key');
    assert.equal(auth({ env, sasFile: SAS }).credential.kind, 'sas');
    assert.deepEqual(auth({ account: 'acct1' }).credential, { kind: 'identity' });
  });

  it('the service URL: --azure-endpoint as given, else the public cloud of the account', () => {
    assert.equal(auth({ account: 'acct1' }).serviceUrl, 'https://acct1.blob.core.windows.net');
    assert.equal(auth({ account: 'flagacct', env: { AZURE_STORAGE_ACCOUNT: 'envacct' } }).serviceUrl, 'https://flagacct.blob.core.windows.net');
    assert.equal(auth({ account: 'acct1', endpoint: 'https://acct1.blob.core.chinacloudapi.cn/' }).serviceUrl, 'https://acct1.blob.core.chinacloudapi.cn');
    assert.equal(auth({ endpoint: 'http://127.0.0.1:10000/devstoreaccount1', sasFile: SAS }).serviceUrl, 'http://127.0.0.1:10000/devstoreaccount1');
  });

  it('what is missing or malformed is named, never shown', () => {
    refused({}, /no storage account: set --azure-account \(or AZURE_STORAGE_ACCOUNT\), or --azure-endpoint/);
    refused({ account: 'Bad_Account' }, /storage account "Bad_Account" is not 3 to 24 lowercase letters and digits/);
    refused({ endpoint: 'http://127.0.0.1:1/x', keyFile: KEY }, /--azure-key-file .*: an account key needs its account/);
    refused({ account: 'acct1', keyFile: 'hunter2 is my password' }, /--azure-key-file .*: not an account key/);
    refused({ account: 'acct1', env: { AZURE_STORAGE_SAS_TOKEN: 'sv=1&sp=r' } }, /AZURE_STORAGE_SAS_TOKEN: not a SAS token \(it has no sig= field\)/);
    try {
      auth({ account: 'acct1', env: { AZURE_STORAGE_KEY: 'not base64!' } });
      assert.fail('accepted');
    } catch (err) {
      assert.ok(!(err as Error).message.includes('not base64!'), 'the value is not echoed');
    }
  });
});
