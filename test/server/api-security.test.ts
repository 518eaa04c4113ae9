import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError, isLoopbackHost, loadConfig, loadSecrets, redactText, REDACTED } from '../../src/config/index.js';
import { bearerToken, tokenMatches } from '../../src/server/auth.js';
import { loadServerTls, ServerTlsError } from '../../src/server/tls.js';
import { makePki } from '../helpers/tls.js';

const MEMBER = {
  name: 'm1',
  'data-dir': '/var/lib/etcd',
  'initial-cluster': 'm1=http://10.0.0.1:2380',
  'advertise-client-urls': 'http://10.0.0.1:2379',
};

function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'ebs-sec-')), name);
  writeFileSync(file, text);
  return file;
}

function rejected(flags: Record<string, string>, requireMember = true): string {
  try {
    loadConfig({ flags: { ...MEMBER, ...flags }, env: {}, requireMember });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected the configuration to be rejected');
}

describe('API security settings', () => {
  it('refuses a non-loopback --listen without a token, naming the flags that fix it', () => {
    const msg = rejected({ listen: '0.0.0.0:8080' });
    assert.match(msg, /--listen 0\.0\.0\.0:8080/);
    assert.match(msg, /--api-token-file/);
    assert.match(msg, /--insecure-api/);
    assert.match(rejected({ listen: '[::]:8080' }), /--api-token-file/);
  });

  it('accepts it with a token file, a token, or --insecure-api; loopback needs none', () => {
    const token = tempFile('token', 's3cr3t-token\n');
    for (const flags of [{ 'api-token-file': token }, { 'api-token': 'abcdef' }, { 'insecure-api': 'true' }]) {
      assert.doesNotThrow(() => loadConfig({ flags: { ...MEMBER, listen: '10.0.0.1:8080', ...flags }, env: {}, requireMember: true }));
    }
    assert.doesNotThrow(() => loadConfig({ flags: { ...MEMBER, listen: '127.0.0.1:8080' }, env: {}, requireMember: true }));
    assert.doesNotThrow(() => loadConfig({ flags: { ...MEMBER, listen: '10.0.0.1:8080' }, env: { EBS_API_TOKEN: 'from-env' }, requireMember: true }));
    // Clients of the API (`snapshot full`) read the same settings and are not refused.
    assert.doesNotThrow(() => loadConfig({ flags: { listen: '0.0.0.0:8080' }, env: {}, requireMember: false }));
  });

  it('rejects contradictory TLS and token settings', () => {
    const f = tempFile('x.pem', 'x');
    assert.match(rejected({ 'server-cert': f }), /--server-cert and --server-key go together/);
    assert.match(rejected({ 'server-client-ca': f }), /--server-client-ca .* needs --server-cert/);
    assert.match(rejected({ 'api-token': 'abcdef', 'api-token-file': f }), /--api-token and --api-token-file are both set/);
    assert.match(rejected({ 'api-token-file': '/no/such/token' }), /--api-token-file: file "\/no\/such\/token" does not exist/);
  });

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'etcd-0.etcd', '127.0.0.1.nip.io']) assert.equal(isLoopbackHost(h), false, h);
  });

  it('reads the token file once, trimmed of its final newline; an empty file is an error naming it', () => {
    const token = tempFile('token', 'tok-123456\n');
    const { config } = loadConfig({ flags: { ...MEMBER, 'api-token-file': token }, env: {}, requireMember: true });
    assert.equal(loadSecrets(config, {}).apiToken, 'tok-123456');
    const empty = tempFile('token', '\n');
    const { config: c2 } = loadConfig({ flags: { ...MEMBER, 'api-token-file': empty }, env: {}, requireMember: true });
    assert.throws(
      () => loadSecrets(c2, {}),
      (e: Error) => e instanceof ConfigError && /--api-token-file: ".*" is empty/.test(e.message),
    );
  });

  it('collects every secret the config points at', () => {
    const aws = tempFile('credentials', '[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG\n');
    const gcs = tempFile(
      'key.json',
      JSON.stringify({ type: 'service_account', private_key_id: 'abc123def456', private_key: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n' }),
    );
    const pw = tempFile('pw', 'etcd-pass-word\n');
    const { config } = loadConfig({
      flags: { ...MEMBER, 'api-token': 'api-token-value', 's3-credentials-file': aws, 'gcs-key-file': gcs, 'etcd-username': 'root', 'etcd-password-file': pw },
      env: {},
      requireMember: true,
    });
    const { values } = loadSecrets(config, { AWS_SECRET_ACCESS_KEY: 'env-secret-key' });
    for (const v of ['api-token-value', 'wJalrXUtnFEMI/K7MDENG', 'abc123def456', 'etcd-pass-word', 'env-secret-key']) assert.ok(values.includes(v), v);
    assert.ok(values.some((v) => v.includes('MIIEvQIBADANBg')));
    assert.ok(!values.includes('AKIAEXAMPLE'), 'an access key id is not a secret');
  });

  it('collects the Azure account key, the SAS token and its signature, and the AZURE_* secrets', () => {
    const key = tempFile('azure.key', 'YWNjb3VudC1rZXktYnl0ZXM=\n');
    const sas = tempFile('azure.sas', '?sv=2024-08-04&sp=racwdl&sig=c2lnbmF0dXJl%2Bx%3D\n');
    const { config } = loadConfig({ flags: { ...MEMBER, 'azure-key-file': key }, env: {}, requireMember: true });
    const fromKey = loadSecrets(config, { AZURE_STORAGE_KEY: 'env-account-key', AZURE_CLIENT_SECRET: 'client-secret-value' }).values;
    for (const v of ['YWNjb3VudC1rZXktYnl0ZXM=', 'env-account-key', 'client-secret-value']) assert.ok(fromKey.includes(v), v);
    const { config: c2 } = loadConfig({ flags: { ...MEMBER, 'azure-sas-file': sas }, env: {}, requireMember: true });
    const fromSas = loadSecrets(c2, {}).values;
    for (const v of ['sv=2024-08-04&sp=racwdl&sig=c2lnbmF0dXJl%2Bx%3D', 'c2lnbmF0dXJl+x=', 'c2lnbmF0dXJl%2Bx%3D']) assert.ok(fromSas.includes(v), v);
  });
});

describe('redactText', () => {
  it('hides secrets, their JSON-escaped form, and URL passwords', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----';
    const line = JSON.stringify({ msg: `token tok-123456 and ${pem}`, url: 'http://admin:hunter22@minio:9000/x' });
    const out = redactText(line, ['tok-123456', pem]);
    assert.ok(!out.includes('tok-123456'));
    assert.ok(!out.includes('AAAA'));
    assert.ok(!out.includes('hunter22'));
    assert.ok(out.includes(`admin:${REDACTED}@minio`));
    assert.doesNotThrow(() => JSON.parse(out), 'still JSON');
  });

  it('never leaves a secret in text, wherever it sits and however often (property)', () => {
    const alnum = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789/+='.split(''));
    const other = fc.constantFrom(...' {}[]":,.-_\\\n\t<>'.split(''));
    fc.assert(
      fc.property(fc.string({ unit: alnum, minLength: 4, maxLength: 40 }), fc.array(fc.string({ unit: other }), { minLength: 1, maxLength: 5 }), (secret, fillers) => {
        const text = fillers.join(secret);
        const out = redactText(JSON.stringify({ text }), [secret]);
        assert.ok(!out.includes(secret), out);
        assert.equal(out.split(REDACTED).length - 1, fillers.length - 1);
      }),
    );
  });
});

describe('bearer tokens', () => {
  it('parses only "Bearer <token>"', () => {
    assert.deepEqual(bearerToken('Bearer abc'), { token: 'abc' });
    assert.deepEqual(bearerToken('bearer abc'), { token: 'abc' });
    for (const h of [undefined, '', 'Basic abc', 'Bearer', 'Bearer a b', 'Bearerabc']) assert.ok('problem' in bearerToken(h), String(h));
  });

  it('matches exactly, whatever the lengths', () => {
    assert.equal(tokenMatches('abc', 'abc'), true);
    for (const t of ['ab', 'abcd', 'ABC', '', 'abc ']) assert.equal(tokenMatches(t, 'abc'), false, t);
  });
});

describe('server certificates', () => {
  const a = makePki(mkdtempSync(join(tmpdir(), 'ebs-pki-a-')));
  const b = makePki(mkdtempSync(join(tmpdir(), 'ebs-pki-b-')));

  it('loads a matching pair, with a client CA for mutual TLS', () => {
    const tls = loadServerTls({ cert: a.serverCert, key: a.serverKey, clientCa: a.ca });
    assert.equal(tls.requestCert, true);
    assert.equal(tls.rejectUnauthorized, true);
  });

  it('names the flags when the key does not belong to the certificate', () => {
    assert.throws(
      () => loadServerTls({ cert: a.serverCert, key: b.serverKey }),
      (e: Error) => e instanceof ServerTlsError && /--server-key ".*" is not the private key of --server-cert/.test(e.message),
    );
  });

  it('names the flag of an unreadable or non-PEM file', () => {
    assert.throws(() => loadServerTls({ cert: '/no/such/cert', key: a.serverKey }), /--server-cert "\/no\/such\/cert": cannot read \(ENOENT\)/);
    assert.throws(() => loadServerTls({ cert: a.serverCert, key: tempFile('k', 'garbage') }), /--server-key ".*": no PEM private key/);
    assert.throws(() => loadServerTls({ cert: tempFile('c', 'garbage'), key: a.serverKey }), /--server-cert ".*": no PEM certificate/);
    assert.throws(() => loadServerTls({ cert: a.serverCert, key: a.serverKey, clientCa: tempFile('ca', 'nope') }), /--server-client-ca/);
  });
});
