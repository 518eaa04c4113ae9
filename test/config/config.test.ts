import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, redactedConfig } from '../../src/config/index.js';

const MEMBER = {
  name: 'm1',
  'data-dir': '/var/lib/etcd',
  'initial-cluster': 'm1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380',
  'advertise-client-urls': 'http://10.0.0.1:2379',
};

function yamlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-config-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, text);
  return file;
}

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected the configuration to be rejected');
}

describe('config precedence: defaults < file < environment < flags', () => {
  const file = yamlFile(
    ['etcd-call-timeout: 3s', 'dial-keep-alive-time: 20s', 'auto-sync-interval: 1m', 'listen: 127.0.0.1:9000', 'endpoints:', '  - http://10.0.0.1:2379', '  - http://10.0.0.2:2379'].join('\n'),
  );

  it('takes the default when nothing sets a value', () => {
    const { config } = loadConfig({ flags: MEMBER, env: {}, requireMember: true });
    assert.equal(config.etcdCallTimeout, 2_000);
    assert.equal(config.dialKeepAliveTime, 10_000);
    assert.equal(config.dialKeepAliveTimeout, 5_000);
    assert.equal(config.permitWithoutStream, false);
    assert.equal(config.store, 'file://./backups');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(config.serverBodyLimit, 2 ** 20);
    assert.equal(config.storeTimeout, 30_000);
    assert.equal(config.storeMaxAttempts, 5);
    assert.equal(config.storePartSize, 5 * 2 ** 20);
    assert.equal(config.gcsChunkSize, 0);
  });

  it('file beats default, environment beats file, flag beats environment', () => {
    const env = { EBS_DIAL_KEEP_ALIVE_TIME: '30s', EBS_AUTO_SYNC_INTERVAL: '2m' };
    const { config } = loadConfig({ flags: { ...MEMBER, config: file, 'auto-sync-interval': '5m' }, env, requireMember: true });
    assert.equal(config.etcdCallTimeout, 3_000, 'file over default');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 9000 }, 'file over default');
    assert.equal(config.dialKeepAliveTime, 30_000, 'env over file');
    assert.equal(config.autoSyncInterval, 300_000, 'flag over env over file');
    assert.deepEqual(config.endpoints, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], 'YAML list');
  });

  it('finds the file through EBS_CONFIG too', () => {
    const { config } = loadConfig({ flags: MEMBER, env: { EBS_CONFIG: file }, requireMember: true });
    assert.equal(config.etcdCallTimeout, 3_000);
  });

  it('derives peer URLs from --initial-cluster and endpoints from --advertise-client-urls', () => {
    const { config } = loadConfig({ flags: MEMBER, env: {}, requireMember: true });
    assert.deepEqual(config.initialAdvertisePeerUrls, ['http://10.0.0.1:2380']);
    assert.deepEqual(config.endpoints, ['http://10.0.0.1:2379']);
    assert.equal(config.initialCluster.length, 3);
  });
});

describe('invalid input names the field and the value', () => {
  const cases: Array<[string, Record<string, string>, Record<string, string>, RegExp]> = [
    ['bad duration flag', { 'etcd-call-timeout': '10x' }, {}, /--etcd-call-timeout: "10x" is not a duration/],
    ['bad duration env', {}, { EBS_DIAL_KEEP_ALIVE_TIME: 'soon' }, /EBS_DIAL_KEEP_ALIVE_TIME \(environment\): "soon" is not a duration/],
    ['bad size', { 'server-body-limit': '12 parsecs' }, {}, /--server-body-limit: "12 parsecs" is not a size/],
    ['bad boolean', { 'permit-without-stream': 'maybe' }, {}, /--permit-without-stream: "maybe" is not a boolean/],
    ['bad store scheme', { store: 'ftp://host/x' }, {}, /--store: "ftp:\/\/host\/x" has unsupported scheme ftp/],
    ['store not a URL', { store: 'backups' }, {}, /--store: "backups" is not a URL/],
    ['secondary store is the store', { store: 's3://b/p', 'secondary-store': 's3://b/p/' }, {}, /--secondary-store: s3:\/\/b\/p\/ is --store itself/],
    ['bad secondary store', { 'secondary-store': 'backups2' }, {}, /--secondary-store: "backups2" is not a URL/],
    ['bucket missing', { store: 's3:///prefix' }, {}, /--store: "s3:\/\/\/prefix" names no bucket/],
    ['container missing', { store: 'azblob:///prefix' }, {}, /--store: "azblob:\/\/\/prefix" names no container/],
    ['bad container name', { store: 'azblob://Etcd_Backups/p' }, {}, /--store: "azblob:\/\/Etcd_Backups\/p": container "Etcd_Backups" may hold only lowercase letters, digits and hyphens/],
    ['Azure key and SAS', { 'azure-key-file': '/etc/hostname', 'azure-sas-file': '/etc/hostname' }, {}, /--azure-key-file and --azure-sas-file are both set; keep one/],
    ['Azure block too large', { store: 'azblob://etcd/p', 'store-part-size': '5GiB' }, {}, /--store-part-size: Azure blocks are at most 4000MiB/],
    ['bad endpoint URL', { endpoints: 'http://10.0.0.1:2379,10.0.0.2:2379' }, {}, /--endpoints: "10.0.0.2:2379" has no scheme \(write http:\/\/10.0.0.2:2379/],
    ['not http', { endpoints: 'unix://etcd.sock:1' }, {}, /--endpoints: "unix:\/\/etcd.sock:1" must start with http:\/\/ or https:\/\//],
    ['endpoint without port', { endpoints: 'http://10.0.0.1' }, {}, /--endpoints: "http:\/\/10.0.0.1" has no port/],
    ['bad listen', { listen: 'localhost' }, {}, /--listen: "localhost" is not host:port/],
    ['bad initial cluster', { 'initial-cluster': 'm1' }, {}, /--initial-cluster: "m1" is not name=peer-url/],
    ['name not in cluster', { name: 'm9' }, {}, /member "m9" \(from --name\) is not listed/],
    ['bad log level', { 'log-level': 'loud' }, {}, /--log-level: "loud" is not one of/],
    ['missing cert file', { 'etcd-cacert': '/nonexistent/ca.pem' }, {}, /--etcd-cacert: file "\/nonexistent\/ca.pem" does not exist/],
    ['cert without key', { 'etcd-cacert': '/etc/hostname', 'etcd-cert': '/etc/hostname' }, {}, /--etcd-cert and --etcd-key go together/],
    ['password without user', { 'etcd-password': 's3cret' }, {}, /--etcd-username is required with a password/],
    ['unknown flag', { 'no-such-flag': 'x' }, {}, /unknown flag --no-such-flag/],
    ['mixed schemes', { endpoints: 'http://a:1,https://b:2' }, {}, /mixes http and https/],
    ['not a whole number', { 'store-max-attempts': 'three' }, {}, /--store-max-attempts: "three" is not a whole number/],
    ['zero attempts', { 'store-max-attempts': '0' }, {}, /--store-max-attempts: must be at least 1/],
    ['S3 part below 5MiB', { store: 's3://b/p', 'store-part-size': '1MiB' }, {}, /--store-part-size: S3 parts must be at least 5MiB/],
    ['GCS chunk not aligned', { 'gcs-chunk-size': '1000KiB' }, {}, /--gcs-chunk-size: 1024000 bytes is not a multiple of 256KiB/],
    ['KMS key without SSE-KMS', { 's3-sse-kms-key-id': 'k' }, {}, /--s3-sse-kms-key-id needs --s3-sse=aws:kms/],
    ['bad S3 endpoint', { 's3-endpoint': 'minio:9000' }, {}, /--s3-endpoint: "minio:9000" has no scheme/],
    ['bad SSE mode', { 's3-sse': 'rot13' }, {}, /--s3-sse: "rot13" is not one of none, AES256, aws:kms/],
    ['bad cron schedule', { 'full-snapshot-schedule': 'hourly' }, {}, /--full-snapshot-schedule: "hourly" is not a cron schedule/],
    ['cron out of range', { 'full-snapshot-schedule': '0 25 * * *' }, {}, /--full-snapshot-schedule: "0 25 \* \* \*" is not a cron schedule/],
    ['bad compression', { compression: 'bzip2' }, {}, /--compression: "bzip2" is not one of gzip, zlib, lzw, none/],
    ['compression level out of range', { 'compression-level': '11' }, {}, /--compression-level: 11 is not between 1 and 9/],
    ['no backups kept', { 'max-backups': '0' }, {}, /--max-backups: must be at least 1/],
    ['tiny delta memory limit', { 'delta-snapshot-memory-limit': '1KiB' }, {}, /--delta-snapshot-memory-limit: 1024 bytes is below 64KiB/],
    ['bad snapshot leader', { 'snapshot-leader': 'sometimes' }, {}, /--snapshot-leader: "sometimes" is not one of elect, always, never/],
  ];
  for (const [what, flags, env, expected] of cases) {
    it(what, () => {
      assert.match(
        problemsOf(() => loadConfig({ flags: { ...MEMBER, ...flags }, env, requireMember: true })),
        expected,
      );
    });
  }

  it("an endpoint URL may leave out https's default port; a member URL may not", () => {
    const { config } = loadConfig({ flags: { ...MEMBER, 'azure-endpoint': 'https://acct1.blob.core.chinacloudapi.cn' }, env: {}, requireMember: true });
    assert.equal(config.azureEndpoint, 'https://acct1.blob.core.chinacloudapi.cn');
  });

  it('missing member settings are each named', () => {
    const message = problemsOf(() => loadConfig({ flags: {}, env: {}, requireMember: true }));
    for (const flag of ['--name', '--data-dir', '--initial-cluster', '--advertise-client-urls']) assert.ok(message.includes(`${flag} is required`), `${flag} in: ${message}`);
  });

  it('an unknown key in the config file', () => {
    const file = yamlFile('etcd-call-timeout: 1s\nkeepalive: 10s\n');
    assert.match(
      problemsOf(() => loadConfig({ flags: { ...MEMBER, config: file }, env: {}, requireMember: true })),
      /config file .*: unknown key "keepalive"/,
    );
  });

  it('a bad value in the config file says it came from the file', () => {
    const file = yamlFile('etcd-call-timeout: 10\n');
    assert.match(
      problemsOf(() => loadConfig({ flags: { ...MEMBER, config: file }, env: {}, requireMember: true })),
      /etcd-call-timeout \(config file\): "10" is not a duration/,
    );
  });

  it('a config file that is not YAML', () => {
    const file = yamlFile('a: [unclosed\n');
    assert.match(
      problemsOf(() => loadConfig({ flags: { ...MEMBER, config: file }, env: {}, requireMember: true })),
      /config file .*config.yaml:/,
    );
  });

  it('a config file that does not exist', () => {
    assert.match(
      problemsOf(() => loadConfig({ flags: { ...MEMBER, config: '/nonexistent.yaml' }, env: {}, requireMember: true })),
      /--config: file "\/nonexistent.yaml" does not exist/,
    );
  });
});

describe('secrets', () => {
  it('are redacted from the printable config', () => {
    const { config } = loadConfig({ flags: { ...MEMBER, 'etcd-username': 'root', 'etcd-password': 'hunter2' }, env: {}, requireMember: true });
    assert.equal(config.etcdPassword, 'hunter2');
    const shown = JSON.stringify(redactedConfig(config));
    assert.ok(!shown.includes('hunter2'));
    assert.ok(shown.includes('<redacted>'));
  });
});

describe('warnings', () => {
  it('flag keepalive settings that etcd 3.4 punishes with too_many_pings', () => {
    const { warnings } = loadConfig({ flags: { ...MEMBER, 'dial-keep-alive-time': '2s', 'permit-without-stream': 'true' }, env: {}, requireMember: true });
    assert.equal(warnings.length, 2);
    assert.match(warnings.join('\n'), /too_many_pings/);
  });
});

describe('config: what restore needs', () => {
  it("a restore takes exactly etcdutl snapshot restore's flags: no client URL is required", () => {
    const flags = {
      name: 'm0',
      'data-dir': '/var/lib/etcd',
      'initial-cluster': 'm0=http://10.0.0.1:2380',
      'initial-advertise-peer-urls': 'http://10.0.0.1:2380',
      'initial-cluster-token': 't',
      store: 'file:///backups',
    };
    const { config } = loadConfig({ flags, env: {}, requireMember: true, requireClientUrls: false });
    assert.deepEqual(config.initialAdvertisePeerUrls, ['http://10.0.0.1:2380']);
    assert.throws(() => loadConfig({ flags, env: {}, requireMember: true }), /--advertise-client-urls is required/);
  });
});
