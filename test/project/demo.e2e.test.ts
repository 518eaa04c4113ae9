import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
// The demo's etcd is the tests' release (EBS_TEST_ETCD_DIR first in PATH).
import '../helpers/etcd-release.js';

// The README's first command, as a user runs it, including the disaster: every member killed and
// wiped, brought back through the initializer, every key checked.
describe('npm run demo -- --once --disaster', { timeout: 300_000 }, () => {
  it('brings a 3-member cluster up through POST /initialize, survives losing every data dir, and stops everything', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'demo/demo.ts', '--once', '--disaster'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, out);
    assert.match(out, /m1: restore \(/, out);
    assert.match(out, /m2: join-as-learner/, out);
    assert.match(out, /(\d+) of \1 keys are back with their values/, out);
    assert.match(out, /stopped every sidecar and etcd member/);
  });
});
