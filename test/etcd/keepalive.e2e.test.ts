import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { TestCluster } from '../helpers/cluster.js';

// etcd 3.4's gRPC server (--grpc-keepalive-min-time 5s, and no pings allowed on a connection with
// no stream) closes connections that ping too often with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
// The defaults must keep a client idle for a minute without drawing one, while still pinging on
// long-lived streams (a watch) so a black-holed member is noticed (seed 000).

const IDLE_MS = 60_000;

interface ProbeRun {
  stdout: string;
  stderr: string;
  code: number | null;
}

function runProbe(endpoint: string, flags: Record<string, string>, watch: boolean): Promise<ProbeRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/keepalive-probe.ts', JSON.stringify({ endpoint, flags, idleMs: IDLE_MS, watch })], {
      env: { ...process.env, GRPC_TRACE: 'keepalive,transport', GRPC_VERBOSITY: 'DEBUG' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), IDLE_MS + 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

const count = (text: string, re: RegExp): number => text.split('\n').filter((l) => re.test(l)).length;
const GOAWAY = /too_many_pings|excess pings/;
const PING = /Sending ping/;

describe('keepalive defaults against etcd 3.4, 60 s idle', () => {
  let cluster: TestCluster;
  let runs: { idle: ProbeRun; watching: ProbeRun; control: ProbeRun };

  before(async () => {
    cluster = await TestCluster.start(1);
    const endpoint = cluster.endpoints[0] as string;
    // The three clients run side by side so the whole costs one minute. Auto-sync is off for the
    // idle ones: its member list every 30 s is traffic, and traffic resets etcd's ping strikes.
    const [idle, watching, control] = await Promise.all([
      runProbe(endpoint, { 'auto-sync-interval': '0' }, false),
      runProbe(endpoint, {}, true),
      runProbe(endpoint, { 'auto-sync-interval': '0', 'permit-without-stream': 'true' }, false),
    ]);
    runs = { idle, watching, control };
  });
  after(async () => {
    await cluster?.stop();
  });

  it('an idle client with the defaults draws no too_many_pings GOAWAY and still works', () => {
    assert.equal(runs.idle.code, 0, runs.idle.stderr.slice(-2000));
    assert.equal(runs.idle.stdout.trim(), 'done 1');
    assert.equal(
      count(runs.idle.stderr, GOAWAY),
      0,
      runs.idle.stderr
        .split('\n')
        .filter((l) => GOAWAY.test(l))
        .join('\n'),
    );
  });

  it('a client holding a watch pings every 10 s and draws no GOAWAY', () => {
    assert.equal(runs.watching.code, 0, runs.watching.stderr.slice(-2000));
    assert.equal(count(runs.watching.stderr, GOAWAY), 0);
    assert.ok(count(runs.watching.stderr, PING) >= 4, `pings sent: ${count(runs.watching.stderr, PING)}`);
  });

  it('control: --permit-without-stream=true does draw the GOAWAY (the detector works)', () => {
    assert.ok(count(runs.control.stderr, GOAWAY) >= 1, 'expected etcd 3.4 to answer idle pings with too_many_pings');
  });
});
