/**
 * A recovery from the newest surviving copy: this member's own data dir becomes a new one-member
 * cluster the others join. The data dir itself is never started with --force-new-cluster: that
 * flag acts again at every later start of etcd and would drop every member that joined since.
 * Instead a scratch copy of it is started once with the flag in a temporary etcd (which applies
 * every entry the WAL holds as committed, as etcd would), and its db is restored with this member's
 * identity into `<data-dir>.part` and swapped in, like a restore from the backups.
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { freeLoopbackPort, TemporaryEtcd } from '../etcd/temporary.js';
import type { Logger } from '../logger.js';
import { asRestoreError, restoreTemporaryDb } from './finalize.js';
import { makeWorkDir, removeStaleWorkDirs } from './scratch.js';
import { restoreTools } from './tools.js';
import { finishInterruptedSwap, partDir, swapIn } from './swap.js';

export const LOCAL_COPY_PREFIX = '.etcd-recover-';

export interface LocalCopyRestoreOptions {
  dataDir: string;
  name: string;
  /** "m1=http://..." as etcd's --initial-cluster: this member only. */
  initialCluster: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
  scratchDir?: string;
  /** --etcd-bin-dir: the release whose etcd reads the data dir and restores it (default: the etcd in PATH). */
  etcdBinDir?: string;
  log: Logger;
}

export async function restoreFromDataDir(opts: LocalCopyRestoreOptions): Promise<{ revision: number; durationMs: number }> {
  const t0 = performance.now();
  const { dataDir, log } = opts;
  const settled = await finishInterruptedSwap(dataDir);
  if (settled !== 'none') log.warn({ dataDir, action: settled }, 'found the leftovers of an interrupted restore and settled them');
  const tools = restoreTools(opts.etcdBinDir);
  const scratchRoot = opts.scratchDir ?? dirname(dataDir);
  await mkdir(scratchRoot, { recursive: true });
  await removeStaleWorkDirs(scratchRoot, [LOCAL_COPY_PREFIX], log);
  const workDir = await makeWorkDir(scratchRoot, LOCAL_COPY_PREFIX);
  const copy = join(workDir.dir, 'copy');
  const part = partDir(dataDir);
  let temp: TemporaryEtcd | undefined;
  try {
    await cp(dataDir, copy, { recursive: true });
    temp = await TemporaryEtcd.start({
      dataDir: copy,
      name: opts.name,
      peerPort: await freeLoopbackPort(),
      logFile: join(workDir.dir, 'etcd.log'),
      log,
      forceNewCluster: true,
      etcdBinary: tools.etcd,
    });
    await workDir.noteEtcd(temp.process.pid);
    const revision = await temp.revision();
    await temp.stop();
    temp = undefined;
    await rm(part, { recursive: true, force: true });
    await restoreTemporaryDb(copy, revision, 'it answered with', part, {
      name: opts.name,
      initialCluster: opts.initialCluster,
      initialClusterToken: opts.initialClusterToken,
      initialAdvertisePeerUrls: opts.initialAdvertisePeerUrls,
      tools,
    });
    await swapIn(dataDir, true);
    const durationMs = Math.round(performance.now() - t0);
    log.info({ revision, durationMs }, 'data dir recovered as a new one-member cluster');
    return { revision, durationMs };
  } catch (err) {
    await rm(part, { recursive: true, force: true }).catch(() => {});
    throw asRestoreError(err, `recovery from the data dir ${dataDir} failed`);
  } finally {
    if (temp) await temp.stop().catch(() => {});
    await rm(workDir.dir, { recursive: true, force: true }).catch(() => {});
  }
}
