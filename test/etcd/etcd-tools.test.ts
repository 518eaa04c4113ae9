import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { describe, it } from 'node:test';
import { snapshotRestoreTool } from '../../src/etcd/etcdctl.js';
import { EtcdToolsError, etcdTools, etcdVersion, findInPath, minorDir, minorOf, parseEtcdVersion, releaseBinDir, releasesIn } from '../../src/etcd/tools.js';
import { RestoreError } from '../../src/restore/plan.js';
import { restore } from '../../src/restore/index.js';
import { capturingLogger } from '../helpers/sidecar.js';
import { localFixture } from '../helpers/store-fixtures.js';
import { snapshotName } from '../../src/snapshot/names.js';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';

/** A folder of stand-in programs; each prints `output` and exits 0. */
function toolDir(tools: string[], output = ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-tools-'));
  for (const t of tools) {
    writeFileSync(join(dir, t), `#!/bin/sh\nprintf '%s\\n' '${output}'\n`);
    chmodSync(join(dir, t), 0o755);
  }
  return dir;
}

function withPath<T>(path: string, fn: () => T): T {
  const saved = process.env['PATH'];
  process.env['PATH'] = path;
  try {
    return fn();
  } finally {
    process.env['PATH'] = saved;
  }
}

describe('etcd tools', () => {
  it('parses the version etcd --version prints, and its minor', () => {
    assert.equal(parseEtcdVersion('etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n'), '3.4.23');
    assert.equal(parseEtcdVersion('etcd Version: 3.6.0-rc.1\n'), '3.6.0-rc.1');
    assert.equal(parseEtcdVersion('etcdctl version: 3.5.1\n'), undefined);
    assert.equal(minorOf('3.5.36'), '3.5');
    assert.equal(minorOf('v3.6.0-rc.1'), '3.6');
    assert.throws(() => minorOf('three'), EtcdToolsError);
  });

  it('takes every tool from --etcd-bin-dir, etcdutl only where it is', () => {
    const with34 = toolDir(['etcd', 'etcdctl']);
    assert.deepEqual(etcdTools(with34), { etcd: join(with34, 'etcd'), etcdctl: join(with34, 'etcdctl') });
    assert.equal(snapshotRestoreTool(etcdTools(with34)), join(with34, 'etcdctl'));
    const with36 = toolDir(['etcd', 'etcdctl', 'etcdutl']);
    assert.equal(etcdTools(with36).etcdutl, join(with36, 'etcdutl'));
    assert.equal(snapshotRestoreTool(etcdTools(with36)), join(with36, 'etcdutl'));
    assert.throws(() => etcdTools(toolDir(['etcdctl'])), /has no etcd/);
  });

  it('picks the folder of a minor among v3.5/, v3.6/ (the image layout): the asked one, else the newest', () => {
    assert.equal(minorDir(['v3.5', 'v3.6', 'README'], '3.5'), 'v3.5');
    assert.equal(minorDir(['v3.5', 'v3.10', 'v3.6']), 'v3.10');
    assert.equal(minorDir(['v3.5'], '3.6'), undefined, 'never another release than the one asked');
    assert.equal(minorDir([]), undefined);

    const root = mkdtempSync(join(tmpdir(), 'ebs-tools-minors-'));
    for (const [minor, tools] of [
      ['v3.5', ['etcd', 'etcdctl', 'etcdutl']],
      ['v3.6', ['etcd', 'etcdctl', 'etcdutl']],
    ] as const) {
      mkdirSync(join(root, minor));
      for (const t of tools) {
        writeFileSync(join(root, minor, t), '#!/bin/sh\n');
        chmodSync(join(root, minor, t), 0o755);
      }
    }
    assert.deepEqual(etcdTools(root, '3.5'), { etcd: join(root, 'v3.5', 'etcd'), etcdctl: join(root, 'v3.5', 'etcdctl'), etcdutl: join(root, 'v3.5', 'etcdutl') });
    assert.equal(etcdTools(root).etcd, join(root, 'v3.6', 'etcd'));
    assert.throws(
      () => etcdTools(root, '3.4'),
      (err: Error) => err instanceof EtcdToolsError && /no tools for etcd 3\.4 \(it has v3\.5, v3\.6\)/.test(err.message),
    );
    // What a restore is handed: one release's folder.
    assert.equal(releaseBinDir(root, '3.5'), join(root, 'v3.5'));
    assert.equal(releaseBinDir(root), join(root, 'v3.6'));
    assert.equal(releaseBinDir(join(root, 'v3.5'), '3.6'), join(root, 'v3.5'), 'a folder of one release is taken as it is');
    assert.equal(releaseBinDir(undefined, '3.5'), undefined);
  });

  it('without --etcd-bin-dir, takes the tools beside the first etcd in PATH, not an etcdutl of another folder', () => {
    const empty = mkdtempSync(join(tmpdir(), 'ebs-tools-'));
    const otherUtl = toolDir(['etcdutl']);
    const old = toolDir(['etcd', 'etcdctl']);
    const newer = toolDir(['etcd', 'etcdctl', 'etcdutl']);
    const path = [empty, otherUtl, old, newer].join(delimiter);
    assert.equal(findInPath('etcd', path), join(old, 'etcd'));
    assert.equal(findInPath('etcdutl', path), join(otherUtl, 'etcdutl'));
    assert.deepEqual(
      withPath(path, () => etcdTools()),
      { etcd: join(old, 'etcd'), etcdctl: join(old, 'etcdctl') },
    );
    // A folder in PATH that holds a non-executable etcd is passed over, as the shell would.
    const notExec = mkdtempSync(join(tmpdir(), 'ebs-tools-'));
    writeFileSync(join(notExec, 'etcd'), '');
    assert.equal(withPath([notExec, newer].join(delimiter), () => etcdTools()).etcdutl, join(newer, 'etcdutl'));
    assert.deepEqual(
      withPath(empty, () => etcdTools()),
      { etcd: 'etcd', etcdctl: 'etcdctl' },
    );
  });

  it('reads the version from the etcd of the tools', async () => {
    const dir = toolDir(['etcd'], 'etcd Version: 3.5.16');
    assert.deepEqual(await etcdVersion(etcdTools(dir)), { version: '3.5.16', minor: '3.5' });
    await assert.rejects(etcdVersion(etcdTools(toolDir(['etcd'], 'nothing useful'))), /printed no version/);
  });

  it('a restore given a folder without etcd fails before touching the store or the data dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-tools-'));
    mkdirSync(join(dir, 'bin'));
    const store = new Proxy({}, { get: () => assert.fail('the store was used') });
    const { log } = capturingLogger('info');
    await assert.rejects(
      restore({
        store: store as never,
        dataDir: join(dir, 'data'),
        name: 'r1',
        initialCluster: 'r1=http://127.0.0.1:1',
        initialClusterToken: 't',
        initialAdvertisePeerUrls: ['http://127.0.0.1:1'],
        log,
        etcdBinDir: join(dir, 'bin'),
      }),
      (err: unknown) => err instanceof RestoreError && err.code === 'bad_request' && /has no etcd/.test(err.message),
    );
  });

  it('lists the releases a restore can pick: one per v3.x folder, or the one etcd by the version it prints', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ebs-tools-releases-'));
    for (const minor of ['v3.5', 'v3.6', 'notes']) {
      mkdirSync(join(root, minor));
      writeFileSync(join(root, minor, 'etcd'), '#!/bin/sh\n');
      chmodSync(join(root, minor, 'etcd'), 0o755);
    }
    assert.deepEqual((await releasesIn(root)).map((r) => [r.minor, r.tools.etcd]).sort(), [
      ['3.5', join(root, 'v3.5', 'etcd')],
      ['3.6', join(root, 'v3.6', 'etcd')],
    ]);
    const single = toolDir(['etcd', 'etcdctl', 'etcdutl'], 'etcd Version: 3.5.21');
    assert.deepEqual(
      (await releasesIn(single)).map((r) => [r.minor, r.tools.version]),
      [['3.5', '3.5.21']],
    );
    assert.deepEqual(await releasesIn(toolDir(['etcd'], 'no version here')), []);
  });

  it('refuses a chain taken from etcd 3.6 with only 3.5 tools, before the data dir is touched', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ebs-tools-refuse-'));
    mkdirSync(join(root, 'bin', 'v3.5'), { recursive: true });
    for (const t of ['etcd', 'etcdctl', 'etcdutl']) {
      writeFileSync(join(root, 'bin', 'v3.5', t), '#!/bin/sh\nexit 1\n');
      chmodSync(join(root, 'bin', 'v3.5', t), 0o755);
    }
    const fixture = await localFixture();
    const store = await fixture.open();
    try {
      const name = snapshotName({ kind: 'full', startRevision: 0, lastRevision: 42, createdAt: new Date(), compression: 'none' });
      await store.put(name, Readable.from([Buffer.from('not read: the refusal comes first')]), { metadata: { 'ebs-kind': 'full', 'ebs-etcd-version': '3.6.5' } });
      // A data dir to be replaced, and the complete copy of an interrupted swap beside it: both must stay.
      const dataDir = join(root, 'data');
      mkdirSync(dataDir);
      writeFileSync(join(dataDir, 'keep'), 'old');
      mkdirSync(`${dataDir}.part`);
      writeFileSync(join(`${dataDir}.part`, 'keep'), 'new');
      const { log } = capturingLogger('info');
      await assert.rejects(
        restore({
          store,
          dataDir,
          replaceExisting: true,
          name: 'r1',
          initialCluster: 'r1=http://127.0.0.1:1',
          initialClusterToken: 't',
          initialAdvertisePeerUrls: ['http://127.0.0.1:1'],
          log,
          etcdBinDir: join(root, 'bin'),
          etcdVersion: '3.5',
        }),
        (err: unknown) =>
          err instanceof RestoreError &&
          err.code === 'etcd_version' &&
          err.message.includes('need etcd 3.6') &&
          err.message.includes(`${name} was taken from etcd 3.6.5`) &&
          err.message.includes('holds v3.5'),
      );
      assert.equal(readFileSync(join(dataDir, 'keep'), 'utf8'), 'old');
      assert.equal(readFileSync(join(`${dataDir}.part`, 'keep'), 'utf8'), 'new');
    } finally {
      await store.close();
      await fixture.stop();
    }
  });
});
