/**
 * A restore drill: the latest chain restored into a scratch dir, started, and checked against what
 * the chain says. Proves the backups restore before the day they must.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freeLoopbackPort, TemporaryEtcd } from '../etcd/temporary.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { restore, type RestoreProgress, type RestoreResult } from './index.js';
import type { ReplaySample } from './replay-rates.js';
import { makeWorkDir } from './scratch.js';

export interface DrillOptions {
  store: SnapStore;
  scratchDir: string;
  log: Logger;
  expectClusterId?: string;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
  /** Folder of the etcd tools, or of one per minor (default: where PATH's etcd is); the drill's etcd is the release the restore picked. */
  etcdBinDir?: string;
  /** --etcd-version: the release when the backups record none. */
  etcdVersion?: string;
  /** Replay transactions in flight, as a restore's (default 16). */
  replayWindow?: number;
  /** Where the drill's replay rate is recorded (replay-rates.ts). */
  replayRatesFile?: string;
}

export interface DrillReport {
  pass: boolean;
  /** What did not hold; empty when the drill passed. */
  problems: string[];
  restore?: RestoreResult;
  /** Revision the restored member reports. */
  revision?: number;
  /** Live keys at the restored revision, and what the full snapshot's count plus the deltas' creates and deletes make. */
  keys?: number;
  expectedKeys?: number;
  durationMs: number;
}

const DRILL_MEMBER = 'restore-drill';

/** A chain restored into a scratch dir and a temporary etcd running on it. */
export interface StartedChain {
  restored: RestoreResult;
  etcd: TemporaryEtcd;
}

/**
 * The latest chain (or up to `toRevision`) restored into `work` under a loopback identity and
 * started, its leases kept alive so the revision stays where the chain ends. The caller stops it.
 */
export async function startRestoredChain(
  opts: DrillOptions & { toRevision?: number; measuredAs?: ReplaySample['kind'] },
  work: string,
  member: string,
  noteEtcd: (pid: number | undefined) => Promise<void>,
  seen: (r: RestoreResult) => void = () => {},
): Promise<StartedChain> {
  const peerPort = await freeLoopbackPort();
  const peerURL = `http://127.0.0.1:${peerPort}`;
  const dataDir = join(work, 'data');
  const restored = await restore({
    store: opts.store,
    dataDir,
    name: member,
    initialCluster: `${member}=${peerURL}`,
    initialClusterToken: member,
    initialAdvertisePeerUrls: [peerURL],
    scratchDir: work,
    log: opts.log,
    ...(opts.expectClusterId !== undefined ? { expectClusterId: opts.expectClusterId } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.etcdBinDir ? { etcdBinDir: opts.etcdBinDir } : {}),
    ...(opts.etcdVersion ? { etcdVersion: opts.etcdVersion } : {}),
    ...(opts.replayWindow ? { replayWindow: opts.replayWindow } : {}),
    ...(opts.toRevision !== undefined ? { toRevision: opts.toRevision } : {}),
    ...(opts.replayRatesFile ? { replayRatesFile: opts.replayRatesFile, measuredAs: opts.measuredAs ?? 'drill' } : {}),
  });
  seen(restored);
  const etcd = await TemporaryEtcd.start({ dataDir, name: member, peerPort, logFile: join(work, 'etcd.log'), log: opts.log, etcdBinary: restored.etcd.binary });
  try {
    await noteEtcd(etcd.process.pid);
    await etcd.keepLeasesAlive(opts.log);
  } catch (err) {
    await etcd.stop().catch(() => {});
    throw err;
  }
  return { restored, etcd };
}

export async function restoreDrill(opts: DrillOptions): Promise<DrillReport> {
  const t0 = performance.now();
  await mkdir(opts.scratchDir, { recursive: true });
  const workDir = await makeWorkDir(opts.scratchDir, '.etcd-drill-');
  const work = workDir.dir;
  const problems: string[] = [];
  const report: DrillReport = { pass: false, problems, durationMs: 0 };
  let etcd: TemporaryEtcd | undefined;
  try {
    const started = await startRestoredChain(
      opts,
      work,
      DRILL_MEMBER,
      (pid) => workDir.noteEtcd(pid),
      (r) => (report.restore = r),
    );
    etcd = started.etcd;
    const restored = started.restored;
    report.revision = await etcd.revision();
    if (report.revision !== restored.revision) problems.push(`the restored member is at revision ${report.revision}, the chain ends at ${restored.revision}`);
    const live = etcd;
    const count = async (revision: number): Promise<number> => Number((await live.client.kv.range({ key: Buffer.from([0]), range_end: Buffer.from([0]), revision, count_only: true })).count);
    report.keys = await count(restored.revision);
    report.expectedKeys = (await count(restored.fullRevision)) + restored.liveKeyChange;
    if (report.keys !== report.expectedKeys) problems.push(`the restored member holds ${report.keys} keys at revision ${restored.revision}; the chain says ${report.expectedKeys}`);
  } catch (err) {
    problems.push((err as Error).message);
  } finally {
    if (etcd) await etcd.stop().catch(() => {});
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
  report.pass = problems.length === 0;
  report.durationMs = Math.round(performance.now() - t0);
  return report;
}
