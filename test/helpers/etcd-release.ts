/**
 * Which etcd release the tests run, decided in one place. `npm test` sets EBS_TEST_ETCD_DIR to
 * .peers/etcd-v3.6 when that was built; every helper that starts etcd (TestCluster, the managed
 * sidecars and the etcd they render a config for, run-etcd, the etcdctl the tests call) finds its
 * tools in PATH, so the folder goes first in the PATH of this process and of everything it spawns.
 * Without it the tests run the etcd in PATH (Debian's 3.4).
 */
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findInPath } from '../../src/etcd/tools.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** PATH as the test process found it, before the test etcd's folder went first. */
export const ORIGINAL_PATH = process.env['PATH'] ?? '';

export const TEST_ETCD_DIR: string | undefined = process.env['EBS_TEST_ETCD_DIR'] || undefined;

if (TEST_ETCD_DIR) {
  if (!existsSync(join(TEST_ETCD_DIR, 'etcd'))) throw new Error(`EBS_TEST_ETCD_DIR=${TEST_ETCD_DIR} has no etcd`);
  if (ORIGINAL_PATH.split(delimiter)[0] !== TEST_ETCD_DIR) process.env['PATH'] = `${TEST_ETCD_DIR}${delimiter}${ORIGINAL_PATH}`;
}

/**
 * The folder of one release line's tools: 3.4 is the etcd in the PATH the tests started with
 * (Debian's), 3.5 and 3.6 are built into .peers/ by `npm run peers`. Undefined where this machine
 * has none; the caller checks the version it finds there.
 */
export function releaseDir(minor: string): string | undefined {
  if (minor === '3.4') {
    const etcd = findInPath('etcd', ORIGINAL_PATH);
    return etcd ? dirname(etcd) : undefined;
  }
  const dir = join(ROOT, '.peers', `etcd-v${minor}`);
  return existsSync(join(dir, 'etcd')) ? dir : undefined;
}
