/**
 * Compaction: the latest chain (a full snapshot and its deltas) turned into one full snapshot at
 * the chain's last revision, offline: restored into a scratch temporary etcd, snapshotted there and
 * uploaded with the chain's cluster ID. A later restore starts from it and replays nothing, and the
 * old deltas fall to retention with the full snapshot they follow. For a store whose chain grew
 * while no full snapshot could be taken (etcd too loaded, the snapshotter failing).
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import type { TemporaryEtcd } from '../etcd/temporary.js';
import type { Logger } from '../logger.js';
import { takeFullSnapshot, type FullSnapshot } from '../snapshot/full.js';
import type { Compression } from '../snapshot/names.js';
import { listSnapshots } from '../snapshot/snapshotter.js';
import type { SnapStore } from '../snapstore/types.js';
import { startRestoredChain } from './drill.js';
import { planRestore, RestoreError } from './plan.js';
import { replayRatesFile } from './replay-rates.js';
import { makeWorkDir } from './scratch.js';
import { WORK_PREFIX } from './from-backups.js';

export interface CompactOptions {
  store: SnapStore;
  /** Where the temporary etcd runs; it needs room for the db the chain restores to. */
  scratchDir: string;
  /** Where the new full snapshot is staged before its upload. */
  spoolDir: string;
  compression: Compression;
  compressionLevel: number;
  /** Recorded on the object as the member that made it. */
  memberName: string;
  log: Logger;
  etcdBinDir?: string;
  /** --etcd-version: the release when the chain records none. */
  etcdVersion?: string;
  replayWindow?: number;
  replayRatesFile?: string;
  /** --store-retention: the new full snapshot is locked this long. */
  retentionMs?: number;
  signal?: AbortSignal;
  now?: () => Date;
}

/** The store's chain cannot be compacted: no full snapshot, nothing after it, or a gap. */
export class CompactRefusedError extends Error {
  override name = 'CompactRefusedError';
}

/** A compaction is already running on this sidecar. */
export class CompactBusyError extends Error {
  override name = 'CompactBusyError';
  constructor() {
    super('a compaction is already running');
  }
}

const COMPACT_MEMBER = 'compact';

/** The options a compaction takes from the configuration (the CLI's and the sidecar's alike). */
export function compactOptionsFromConfig(config: Config, tmp: string): Omit<CompactOptions, 'store' | 'log'> {
  return {
    // Beside the data dir, as a restore's: the volume with room for a db; the CLI without one uses `tmp`.
    scratchDir: config.restoreScratchDir || (config.dataDir ? dirname(resolve(config.dataDir)) : tmp),
    spoolDir: config.spoolDir || tmp,
    compression: config.compression as Compression,
    compressionLevel: config.compressionLevel,
    memberName: config.name || COMPACT_MEMBER,
    replayWindow: config.restoreReplayWindow,
    retentionMs: config.storeRetention,
    ...(config.etcdBinDir ? { etcdBinDir: config.etcdBinDir } : {}),
    ...(config.etcdVersion ? { etcdVersion: config.etcdVersion } : {}),
    ...(config.dataDir ? { replayRatesFile: replayRatesFile(config.dataDir, config.name) } : {}),
  };
}

export async function compactChain(opts: CompactOptions): Promise<FullSnapshot> {
  let plan;
  try {
    plan = planRestore(await listSnapshots(opts.store));
  } catch (err) {
    if (err instanceof RestoreError && (err.code === 'gap' || err.code === 'no_backup')) throw new CompactRefusedError(err.message, { cause: err });
    throw err;
  }
  if (plan.links.length === 0) throw new CompactRefusedError(`the latest chain is ${plan.full.name} alone: nothing to compact`);
  // Pinned: deltas the backup leader uploads meanwhile extend the chain after the new full snapshot.
  const target = plan.targetRevision;
  opts.log.info({ full: plan.full.name, deltas: plan.links.length, lastRevision: target }, 'compaction: restoring the chain into a temporary etcd');
  await mkdir(opts.scratchDir, { recursive: true });
  const workDir = await makeWorkDir(opts.scratchDir, WORK_PREFIX);
  let etcd: TemporaryEtcd | undefined;
  try {
    const started = await startRestoredChain(
      { store: opts.store, scratchDir: opts.scratchDir, log: opts.log, toRevision: target, measuredAs: 'compact', ...pick(opts) },
      workDir.dir,
      COMPACT_MEMBER,
      (pid) => workDir.noteEtcd(pid),
    );
    etcd = started.etcd;
    const { restored } = started;
    if (restored.etcd.upgradedFrom) {
      // A snapshot of the next release's db restores only with that release: the cluster's own
      // could not restore its own chain any more.
      throw new CompactRefusedError(
        `the chain was taken from etcd ${restored.etcd.upgradedFrom}, and --etcd-bin-dir has only ${restored.etcd.minor} to replay it with: a compacted snapshot would need ${restored.etcd.minor} to restore; add the v${restored.etcd.upgradedFrom} tools`,
      );
    }
    const live = etcd;
    const full = await takeFullSnapshot(
      opts.store,
      // The chain's cluster, not the temporary etcd's: a restore refuses a chain naming two clusters.
      // The release that replayed the chain, the chain's own (release-choice.ts): what a restore of it needs.
      { open: () => live.openSnapshot(), member: opts.memberName, etcdVersion: () => Promise.resolve(restored.etcd.minor), ...(restored.clusterId ? { clusterId: restored.clusterId } : {}) },
      { compression: opts.compression, compressionLevel: opts.compressionLevel, spoolDir: opts.spoolDir, retentionMs: opts.retentionMs ?? 0 },
      opts.now,
      opts.signal,
    );
    if (full.lastRevision !== restored.revision) {
      // Only a revoked lease moves the temporary etcd's revision, and its leases are kept alive: refuse anyway.
      await opts.store.delete(full.name).catch(() => {});
      throw new Error(`the compacted snapshot holds revision ${full.lastRevision}, the chain ends at ${restored.revision}; deleted it`);
    }
    opts.log.info(
      { snapshot: full.name, revision: full.lastRevision, from: plan.full.name, deltas: restored.deltasApplied, durationMs: full.durationMs },
      "compaction: full snapshot uploaded at the chain's last revision",
    );
    return full;
  } finally {
    if (etcd) await etcd.stop().catch(() => {});
    await rm(workDir.dir, { recursive: true, force: true }).catch(() => {});
  }
}

function pick(opts: CompactOptions): { etcdBinDir?: string; etcdVersion?: string; replayWindow?: number; replayRatesFile?: string; signal?: AbortSignal } {
  return {
    ...(opts.etcdBinDir ? { etcdBinDir: opts.etcdBinDir } : {}),
    ...(opts.etcdVersion ? { etcdVersion: opts.etcdVersion } : {}),
    ...(opts.replayWindow ? { replayWindow: opts.replayWindow } : {}),
    ...(opts.replayRatesFile ? { replayRatesFile: opts.replayRatesFile } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  };
}
