import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/logger.js';
import { makeWorkDir, removeStaleWorkDirs, selfOwner } from '../../src/restore/scratch.js';

const root = mkdtempSync(join(tmpdir(), 'ebs-scratch-'));
after(() => rmSync(root, { recursive: true, force: true }));
const log = createLogger('silent');
const PREFIX = '.etcd-restore-';

/** A scratch dir whose owner record says what a test wants, as a previous incarnation would have left it. */
function orphan(name: string, owner: object | undefined): void {
  mkdirSync(join(root, PREFIX + name));
  if (owner) writeFileSync(join(root, PREFIX + name, 'owner.json'), JSON.stringify(owner));
}

describe('scratch dirs of interrupted restores', () => {
  it('records the owner with its start time and boot, where /proc tells them', async () => {
    const self = await selfOwner();
    assert.equal(self.pid, process.pid);
    assert.match(self.startTime ?? '', /^\d+$/);
    assert.match(self.bootId ?? '', /^[0-9a-f-]{36}$/);
  });

  it('reclaims the dir of a previous incarnation with the same pid, PID 1 included; keeps those of live restores', async () => {
    const self = await selfOwner();
    const live = await makeWorkDir(root, PREFIX);
    assert.deepEqual(JSON.parse(readFileSync(join(live.dir, 'owner.json'), 'utf8')), self);
    // The sidecar as PID 1 of a container that restarted: pid 1 runs, but it is another process.
    orphan('pid1', { pid: 1, startTime: '1', bootId: self.bootId });
    // Our own pid in a previous incarnation (a container restart reuses it).
    orphan('samepid', { pid: process.pid, startTime: String(Number(self.startTime) - 1), bootId: self.bootId });
    // Another boot: nothing from before it runs.
    orphan('reboot', { pid: process.pid, startTime: self.startTime, bootId: '00000000-0000-0000-0000-000000000000' });
    // A record of an older release, with our pid: this process records its start, so not ours.
    orphan('legacy-samepid', { pid: process.pid });
    orphan('no-owner', undefined);
    // Records that may belong to a live restore are left: an older one of a running pid.
    orphan('legacy-pid1', { pid: 1 });
    const removed = await removeStaleWorkDirs(root, [PREFIX], log);
    assert.equal(removed, 5);
    assert.deepEqual(readdirSync(root).sort(), [PREFIX + 'legacy-pid1', live.dir.slice(root.length + 1)].sort());
  });
});
