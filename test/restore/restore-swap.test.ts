import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { finishInterruptedSwap, fsyncTree, oldDir, partDir, swapIn } from '../../src/restore/swap.js';

const root = mkdtempSync(join(tmpdir(), 'ebs-swap-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function dirWith(path: string, content: string): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'db'), content);
}
const content = (path: string): string => readFileSync(join(path, 'db'), 'utf8');
const fresh = (): string => join(root, `case${n++}`, 'data');

describe('the data dir swap, and recovery from a crash at each step', () => {
  it('replaces a non-empty data dir only when allowed, leaving no .part or .old', async () => {
    const d = fresh();
    dirWith(d, 'old');
    dirWith(partDir(d), 'new');
    await assert.rejects(swapIn(d, false), /not empty/);
    assert.equal(content(d), 'old');
    await swapIn(d, true);
    assert.equal(content(d), 'new');
    assert.ok(!existsSync(partDir(d)) && !existsSync(oldDir(d)));
  });

  it('fills a missing or empty data dir', async () => {
    const a = fresh();
    dirWith(partDir(a), 'new');
    await swapIn(a, false);
    assert.equal(content(a), 'new');
    const b = fresh();
    mkdirSync(b, { recursive: true });
    dirWith(partDir(b), 'new');
    await swapIn(b, false);
    assert.equal(content(b), 'new');
  });

  it('crash while .part was being written: the old data dir stays, .part goes', async () => {
    const d = fresh();
    dirWith(d, 'old');
    dirWith(partDir(d), 'half');
    assert.equal(await finishInterruptedSwap(d), 'cleaned');
    assert.equal(content(d), 'old');
    assert.ok(!existsSync(partDir(d)));
  });

  it('crash between the two renames: the complete new data dir is put in place', async () => {
    const d = fresh();
    dirWith(oldDir(d), 'old');
    dirWith(partDir(d), 'new');
    assert.equal(await finishInterruptedSwap(d), 'completed');
    assert.equal(content(d), 'new');
    assert.ok(!existsSync(oldDir(d)) && !existsSync(partDir(d)));
  });

  it('crash before the old dir was removed: only the cleanup is left', async () => {
    const d = fresh();
    dirWith(d, 'new');
    dirWith(oldDir(d), 'old');
    assert.equal(await finishInterruptedSwap(d), 'cleaned');
    assert.equal(content(d), 'new');
    assert.ok(!existsSync(oldDir(d)));
  });

  it('nothing to do on a clean data dir', async () => {
    const d = fresh();
    dirWith(d, 'x');
    assert.equal(await finishInterruptedSwap(d), 'none');
    assert.equal(content(d), 'x');
  });
});

describe('fsyncTree', () => {
  it('walks a restored data dir: nested dirs, files, and a symlink it does not follow', async () => {
    const d = fresh();
    dirWith(join(d, 'member', 'snap'), 'db');
    mkdirSync(join(d, 'member', 'wal'), { recursive: true });
    writeFileSync(join(d, 'member', 'wal', '0.wal'), 'wal');
    symlinkSync('/nonexistent', join(d, 'dangling'));
    await fsyncTree(d);
    await assert.rejects(fsyncTree(join(d, 'missing')), /ENOENT/);
  });
});
