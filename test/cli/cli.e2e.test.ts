import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { SPECS } from '../../src/config/index.js';
import type { StatusBody } from '../../src/server/schemas.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';

const CLI = ['--import', 'tsx', 'src/cli.ts'];
const MEMBER = ['--name', 'm1', '--data-dir', '/tmp/d', '--initial-cluster', 'm1=http://127.0.0.1:2380', '--advertise-client-urls', 'http://127.0.0.1:2379'];

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
  const r = spawnSync(process.execPath, [...CLI, ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('CLI configuration', () => {
  it('--help lists every flag with its default', () => {
    const { code, stdout } = cli(['serve', '--help']);
    assert.equal(code, 0);
    const flat = stdout.replace(/\s+/g, ' ');
    for (const spec of SPECS) {
      assert.ok(stdout.includes(`--${spec.flag} `), `--${spec.flag} missing from --help`);
      if (spec.default !== undefined) assert.ok(flat.includes(`default: ${spec.default}`), `default of --${spec.flag} missing`);
    }
  });

  it('precedence holds end to end: file < env < flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-cli-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'etcd-call-timeout: 3s\ndial-keep-alive-time: 20s\nauto-sync-interval: 1m\n');
    const { code, stdout, stderr } = cli(['config', ...MEMBER, '--config', file, '--auto-sync-interval', '5m'], { EBS_DIAL_KEEP_ALIVE_TIME: '30s', EBS_AUTO_SYNC_INTERVAL: '2m' });
    assert.equal(code, 0, stderr);
    const shown = parse(stdout) as Record<string, unknown>;
    assert.equal(shown['etcdCallTimeout'], 3_000);
    assert.equal(shown['dialKeepAliveTime'], 30_000);
    assert.equal(shown['autoSyncInterval'], 300_000);
  });

  const invalid: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['bad duration', ['--etcd-call-timeout', 'soon'], {}, /--etcd-call-timeout: "soon" is not a duration/],
    ['bad size from env', [], { EBS_SERVER_BODY_LIMIT: 'huge' }, /EBS_SERVER_BODY_LIMIT \(environment\): "huge" is not a size/],
    ['bad URL', ['--store', 'ftp://x/y'], {}, /--store: "ftp:\/\/x\/y" has unsupported scheme ftp/],
    ['unknown flag', ['--frobnicate', '1'], {}, /unknown option '--frobnicate'/],
  ];
  for (const [what, args, env, expected] of invalid) {
    it(`${what}: clear error, non-zero exit`, () => {
      const r = cli(['serve', ...MEMBER, ...args], env);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, expected);
    });
  }

  it('missing member settings: each named, non-zero exit', () => {
    const r = cli(['serve']);
    assert.equal(r.code, 2);
    for (const flag of ['--name', '--data-dir', '--initial-cluster', '--advertise-client-urls']) assert.match(r.stderr, new RegExp(`${flag} is required`));
  });

  it('an unknown key in the config file: named, non-zero exit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-cli-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'etcd-call-timout: 3s\n');
    const r = cli(['serve', ...MEMBER, '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown key "etcd-call-timout"/);
  });

  it('the compiled bin runs (npm run build)', { skip: !existsSync('dist/cli.js') && 'dist/ not built; `npm test` builds it first' }, () => {
    const r = spawnSync(process.execPath, ['bin/etcd-backup-sidecar.js', '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /serve/);
  });
});

describe('etcd-backup-sidecar serve against etcd with auth enabled', () => {
  const PASSWORD = 'sw0rdf1sh-secret';
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start(1);
    await cluster.enableAuth(PASSWORD);
  });
  after(async () => {
    await cluster?.stop();
  });

  async function serve(password: string): Promise<{ status: StatusBody; code: number | null; log: string }> {
    const port = await freePort();
    const m = cluster.members[0];
    assert.ok(m);
    const child = spawn(
      process.execPath,
      [
        ...CLI,
        'serve',
        '--name',
        'm1',
        '--data-dir',
        m.dataDir,
        '--initial-cluster',
        `m1=${m.peerURL}`,
        '--advertise-client-urls',
        m.clientURL,
        '--listen',
        `127.0.0.1:${port}`,
        '--etcd-username',
        'root',
        '--store',
        `file://${cluster.dir}/backups`,
      ],
      { env: { ...process.env, EBS_ETCD_PASSWORD: password }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let status: StatusBody;
    try {
      await eventually('sidecar up', async () => ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok ? true : undefined), 20_000);
      status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as StatusBody;
    } finally {
      child.kill('SIGTERM');
    }
    return { status, code: await exited, log };
  }

  it('authenticates with the password, logs JSON without it, and stops cleanly on SIGTERM', async () => {
    const { status, code, log } = await serve(PASSWORD);
    assert.equal(code, 0);
    assert.equal(status.members.length, 1);
    assert.equal(status.members[0]?.healthy, true, status.members[0]?.error);
    const lines = log.trim().split('\n');
    assert.ok(lines.length >= 2);
    for (const line of lines) JSON.parse(line); // structured logs only
    assert.ok(!log.includes(PASSWORD), 'the password reached the log');
    assert.match(log, /<redacted>/);
  });

  it('a wrong password shows as an authentication error, never the password', async () => {
    const wrong = 'not-the-password-123';
    const { status, log } = await serve(wrong);
    assert.equal(status.members[0]?.healthy, false);
    assert.match(JSON.stringify(status), /authentication failed/);
    assert.ok(!log.includes(wrong) && !JSON.stringify(status).includes(wrong));
  });
});
