/**
 * Turning a chain of backups into a data dir: the full snapshot restored by etcdutl (etcdctl on
 * etcd 3.4), the deltas replayed revision by revision into a temporary etcd, the result restored
 * once more with this member's real identity into `<data-dir>.part`, then swapped in atomically.
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { snapshotRestore, snapshotRestoreTool } from '../etcd/etcdctl.js';
import { freeLoopbackPort, TemporaryEtcd } from '../etcd/temporary.js';
import type { EtcdTools } from '../etcd/tools.js';
import { restoreRelease, restoreReleases, type RestoreRelease } from './tools.js';
import type { RecordedVersion } from './release-choice.js';
import { asRestoreError, restoreTemporaryDb } from './finalize.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import type { SnapshotRef } from '../snapshot/names.js';
import { listSnapshots } from '../snapshot/snapshotter.js';
import type { SnapStore } from '../snapstore/types.js';
import { clusterIdsOf, fetchFullSnapshot } from './fetch.js';
import { chainClusterId, planFromFullDb, planRestore, RestoreError, type RestorePlan } from './plan.js';
import { retryWithBackoff } from '../resilience.js';
import { checkAborted, replay, type Replayed } from './replay.js';
import { recordReplaySample, replayRatesFile, sampleOf, type ReplaySample } from './replay-rates.js';
import { makeWorkDir, removeStaleWorkDirs } from './scratch.js';
import { finishInterruptedSwap, isMissingOrEmpty, partDir, swapIn } from './swap.js';

type WorkDir = Awaited<ReturnType<typeof makeWorkDir>>;

export interface RestoreOptions {
  store: SnapStore;
  /** Final location; refused if it exists and is non-empty unless replaceExisting. */
  dataDir: string;
  /** The initializer wipes-and-restores: the old dir is replaced atomically at the end. */
  replaceExisting?: boolean;
  /** Member name. */
  name: string;
  /** "m1=http://...,m2=..." as etcd's --initial-cluster. */
  initialCluster: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
  toRevision?: number;
  toTime?: Date;
  /** Where the temporary etcd runs (default: next to dataDir); a tmpfs spares it the fsyncs. */
  scratchDir?: string;
  /** Hex like memberIdHex(); refuse a chain of another cluster. */
  expectClusterId?: string;
  log: Logger;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
  /** Deltas read ahead of the one being replayed (default 4). */
  prefetch?: number;
  /** Stored bytes the deltas read ahead may hold, the one replayed included (default 32 MiB). */
  prefetchBytes?: number;
  /** TTL given to leases that keys in the deltas use but the full snapshot lacks (default 1h). */
  replayLeaseTtlSeconds?: number;
  /**
   * Folder of the etcd, etcdctl and etcdutl to restore with, or of one folder per minor (v3.5/,
   * v3.6/) to pick from by the backups' recorded version (default: where PATH's etcd is).
   */
  etcdBinDir?: string;
  /** --etcd-version: the minor the cluster runs, the release when the backups record none. */
  etcdVersion?: string;
  /** Replay transactions in flight at once (default 16; 1 replays one revision at a time). */
  replayWindow?: number;
  /** Where the replay rate this restore measured is recorded (replay-rates.ts), and as what. */
  replayRatesFile?: string;
  measuredAs?: ReplaySample['kind'];
}

/** The options every restore takes from the configuration (the CLI's and the initializer's alike). */
export function restoreOptionsFromConfig(
  config: Config,
  initialCluster: readonly { name: string; peerURL: string }[],
): Pick<
  RestoreOptions,
  | 'name'
  | 'initialCluster'
  | 'initialClusterToken'
  | 'initialAdvertisePeerUrls'
  | 'scratchDir'
  | 'prefetch'
  | 'prefetchBytes'
  | 'replayLeaseTtlSeconds'
  | 'etcdBinDir'
  | 'etcdVersion'
  | 'replayWindow'
  | 'replayRatesFile'
> {
  return {
    ...(config.dataDir ? { replayRatesFile: replayRatesFile(config.dataDir, config.name) } : {}),
    name: config.name,
    initialCluster: initialCluster.map((e) => `${e.name}=${e.peerURL}`).join(','),
    initialClusterToken: config.initialClusterToken,
    initialAdvertisePeerUrls: config.initialAdvertisePeerUrls,
    ...(config.restoreScratchDir ? { scratchDir: config.restoreScratchDir } : {}),
    prefetch: config.restorePrefetch,
    prefetchBytes: config.restorePrefetchBytes,
    replayWindow: config.restoreReplayWindow,
    replayLeaseTtlSeconds: Math.max(1, Math.round(config.restoreLeaseTtl / 1000)),
    ...(config.etcdBinDir ? { etcdBinDir: config.etcdBinDir } : {}),
    ...(config.etcdVersion ? { etcdVersion: config.etcdVersion } : {}),
  };
}

export type RestorePhase = 'planning' | 'fetching-full' | 'restoring-full' | 'replaying' | 'finalizing' | 'done';

export interface RestoreProgress {
  phase: RestorePhase;
  fullRevision: number;
  /** Revision applied so far. */
  revision: number;
  targetRevision: number;
  deltasApplied: number;
  deltasTotal: number;
  eventsApplied: number;
}

export interface RestoreResult {
  revision: number;
  fullSnapshot: string;
  deltasApplied: number;
  eventsApplied: number;
  clusterId?: string;
  durationMs: number;
  /** Revision inside the full snapshot. */
  fullRevision: number;
  /** Size of the full snapshot's db. */
  fullDbBytes: number;
  /** Live keys the deltas created minus those they deleted: what a drill checks the result against. */
  liveKeyChange: number;
  /** The etcd release that restored (the backups' own, see release-choice.ts) and why it was chosen. */
  etcd: { minor: string; by: RestoreRelease['by']; reason: string; binary: string; upgradedFrom?: string };
  /** Milliseconds of each step, for the bench and the logs. */
  timings: { fetchFullMs: number; restoreFullMs: number; replayMs: number; finalizeMs: number };
}

const TEMP_MEMBER = 'restore-replay';
export const WORK_PREFIX = '.etcd-restore-';

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const { store, dataDir, log, signal } = opts;
  if (opts.initialAdvertisePeerUrls.length === 0) throw new RestoreError('bad_request', 'initialAdvertisePeerUrls is empty');
  // Nothing is written before the release is known: a refusal leaves the data dir as it was.
  const releases = await restoreReleases(opts.etcdBinDir);
  await refuseNonEmpty(opts, 'exists and is not empty; refusing to restore over it');
  const chain = await planChain(opts);
  let release = restoreRelease(releases, opts.etcdVersion, chain.recorded);
  let plan = chain.plan;
  const progress: RestoreProgress = {
    phase: 'planning',
    fullRevision: plan.full.lastRevision,
    revision: 0,
    targetRevision: plan.targetRevision,
    deltasApplied: 0,
    deltasTotal: plan.links.length,
    eventsApplied: 0,
  };
  const report = (phase: RestorePhase): void => {
    progress.phase = phase;
    opts.onProgress?.({ ...progress });
  };
  const workDir = await prepareWorkDir(opts);
  const part = partDir(dataDir);
  let partOwned = false;
  const timings = { fetchFullMs: 0, restoreFullMs: 0, replayMs: 0, finalizeMs: 0 };
  try {
    report('fetching-full');
    let t = performance.now();
    const fullFile = join(workDir.dir, 'full.db');
    const full = await fetchFullSnapshot(store, plan.full, fullFile, signal);
    timings.fetchFullMs = performance.now() - t;
    // A chain that records no version (gardener's) may still say it in its db: 3.6 writes storageVersion.
    if (release.by !== 'backup' && full.storageVersion !== undefined) release = restoreRelease(releases, opts.etcdVersion, chain.recorded, full.storageVersion);
    noteRelease(opts, plan, chain.clusterId, release);
    await settleDataDir(opts);
    partOwned = true;
    await rm(part, { recursive: true, force: true });
    const tools = release.tools;
    progress.fullRevision = full.revision;
    progress.revision = full.revision;
    plan = planFromFullDb(chain.listing, plan.full, full.revision, chain.target);
    progress.targetRevision = plan.targetRevision;
    progress.deltasTotal = plan.links.length;
    checkAborted(signal);
    if (full.revision > plan.targetRevision) {
      throw new RestoreError('target_not_covered', `${plan.full.name} holds revision ${full.revision}, past the target ${plan.targetRevision}`);
    }
    const real = { name: opts.name, initialCluster: opts.initialCluster, initialClusterToken: opts.initialClusterToken, initialAdvertisePeerUrls: opts.initialAdvertisePeerUrls, tools };

    report('restoring-full');
    let replayed: Replayed = { revision: full.revision, events: 0, deltas: 0, keyChange: 0, resent: 0 };
    if (plan.links.length === 0 || full.revision === plan.targetRevision) {
      // Nothing to replay: the snapshot goes straight into place with this member's identity.
      t = performance.now();
      await snapshotRestore({ file: fullFile, dataDir: part, ...real });
      timings.restoreFullMs = performance.now() - t;
    } else {
      replayed = await replayOntoFull({ opts, plan, full, fullFile, workDir, tools, part, real, sizes: chain.sizes, timings, progress, report });
    }
    checkAborted(signal);
    const t2 = performance.now();
    await refuseNonEmpty(opts, 'was filled while the restore ran; refusing to replace it');
    await swapIn(dataDir, opts.replaceExisting ?? false);
    timings.finalizeMs += performance.now() - t2;
    progress.revision = replayed.revision;
    progress.deltasApplied = replayed.deltas;
    progress.eventsApplied = replayed.events;
    report('done');
    const result: RestoreResult = {
      revision: replayed.revision,
      fullSnapshot: plan.full.name,
      deltasApplied: replayed.deltas,
      eventsApplied: replayed.events,
      durationMs: Math.round(performance.now() - t0),
      fullRevision: full.revision,
      fullDbBytes: full.dbBytes,
      liveKeyChange: replayed.keyChange,
      etcd: { minor: release.minor, by: release.by, reason: release.reason, binary: tools.etcd, ...(release.upgradedFrom ? { upgradedFrom: release.upgradedFrom } : {}) },
      timings: { fetchFullMs: Math.round(timings.fetchFullMs), restoreFullMs: Math.round(timings.restoreFullMs), replayMs: Math.round(timings.replayMs), finalizeMs: Math.round(timings.finalizeMs) },
    };
    if (chain.clusterId !== undefined) result.clusterId = chain.clusterId;
    log.info({ ...result }, 'restore complete');
    await noteReplayRate(opts, result);
    return result;
  } catch (err) {
    // Before the settling, `<data-dir>.part` may be an interrupted swap's complete copy: not ours to remove.
    if (partOwned) await rm(part, { recursive: true, force: true }).catch(() => {});
    throw asRestoreError(err, 'restore failed', signal?.aborted);
  } finally {
    await rm(workDir.dir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Refuses to restore over data unless told to (read-only: an interrupted swap is settled later). */
async function refuseNonEmpty(opts: RestoreOptions, why: string): Promise<void> {
  if (!opts.replaceExisting && !(await isMissingOrEmpty(opts.dataDir))) throw new RestoreError('data_dir_not_empty', `data dir ${opts.dataDir} ${why}`);
}

/** The plan and the release that runs it, in the log; a disagreeing --etcd-version as a warning. */
function noteRelease(opts: RestoreOptions, plan: RestorePlan, clusterId: string | undefined, release: RestoreRelease): void {
  const { tools } = release;
  opts.log.info(
    {
      full: plan.full.name,
      deltas: plan.links.length,
      targetRevision: plan.targetRevision,
      toTime: plan.toTime?.toISOString(),
      clusterId,
      etcd: tools.etcd,
      etcdMinor: release.minor,
      chosenBy: release.by,
      why: release.reason,
      restoreTool: snapshotRestoreTool(tools),
    },
    'restore planned',
  );
  if (release.warning) opts.log.warn({ etcdMinor: release.minor }, release.warning);
}

/** Settles what an interrupted restore left, and refuses to restore over data unless told to. */
async function settleDataDir(opts: RestoreOptions): Promise<void> {
  const { dataDir, log } = opts;
  const swapped = await finishInterruptedSwap(dataDir);
  if (swapped !== 'none') log.warn({ dataDir, action: swapped }, 'found the leftovers of an interrupted restore and settled them');
  await refuseNonEmpty(opts, 'exists and is not empty; refusing to restore over it');
}

/** The chain to restore, its cluster (checked against --expect-cluster-id) and its deltas' stored sizes. */
async function planChain(opts: RestoreOptions): Promise<{
  listing: SnapshotRef[];
  plan: RestorePlan;
  target: { toRevision?: number; toTime?: Date };
  clusterId: string | undefined;
  sizes: Map<string, number>;
  recorded: RecordedVersion[];
}> {
  const target: { toRevision?: number; toTime?: Date } = {};
  if (opts.toRevision !== undefined) target.toRevision = opts.toRevision;
  if (opts.toTime !== undefined) target.toTime = opts.toTime;
  const listing = await listSnapshots(opts.store);
  const plan = planRestore(listing, target);
  const refs: SnapshotRef[] = [plan.full, ...plan.links.map((l) => l.delta)];
  const heads = await clusterIdsOf(opts.store, refs);
  const clusterId = chainClusterId(heads, opts.expectClusterId);
  // What bounds the prefetch: the stored size of each delta.
  const sizes = new Map(heads.map((h) => [h.name, h.size]));
  // The version every object was taken from: the newest decides which release replays the chain.
  const recorded = heads.flatMap((h) => (h.etcdVersion ? [{ name: h.name, version: h.etcdVersion }] : []));
  return { listing, plan, target, clusterId, sizes, recorded };
}

/** This restore's scratch dir, stale ones of dead restores removed first. */
async function prepareWorkDir(opts: RestoreOptions): Promise<WorkDir> {
  const scratchRoot = opts.scratchDir ?? dirname(opts.dataDir);
  await mkdir(scratchRoot, { recursive: true });
  const stale = await removeStaleWorkDirs(scratchRoot, [WORK_PREFIX, '.etcd-drill-'], opts.log);
  if (stale > 0) opts.log.warn({ scratchRoot, removed: stale }, 'removed the scratch dirs of interrupted restores');
  return await makeWorkDir(scratchRoot, WORK_PREFIX);
}

interface ReplayStep {
  opts: RestoreOptions;
  plan: RestorePlan;
  full: { revision: number };
  fullFile: string;
  workDir: WorkDir;
  tools: EtcdTools;
  part: string;
  real: Parameters<typeof restoreTemporaryDb>[4];
  sizes: Map<string, number>;
  timings: { restoreFullMs: number; replayMs: number; finalizeMs: number };
  progress: RestoreProgress;
  report: (phase: RestorePhase) => void;
}

/** The full snapshot in a temporary etcd, the deltas replayed into it, its db restored into `part`. */
async function replayOntoFull(x: ReplayStep): Promise<Replayed> {
  const { opts, plan, full } = x;
  const log = opts.log;
  let t = performance.now();
  const started = await startReplayEtcd(x.fullFile, x.workDir.dir, x.tools, log, (pid) => x.workDir.noteEtcd(pid));
  let temp: TemporaryEtcd | undefined = started.etcd;
  try {
    // Leases first, before anything else waits (a few seconds of grace, see temporary.ts): from
    // here on none can expire, so the revision cannot move on its own.
    const keeper = await temp.keepLeasesAlive(log);
    await rm(x.fullFile, { force: true });
    const startRevision = await temp.revision();
    if (startRevision !== full.revision) {
      throw new RestoreError('revision_mismatch', `the temporary etcd started at revision ${startRevision}, not at the full snapshot's ${full.revision}`);
    }
    x.timings.restoreFullMs = performance.now() - t;
    log.info({ revision: startRevision, leases: keeper.size }, 'full snapshot restored into the temporary etcd; replaying deltas');

    x.report('replaying');
    t = performance.now();
    const replayed = await replay(temp, keeper, plan, full.revision, { ...opts, sizes: x.sizes }, (p) => {
      Object.assign(x.progress, p);
      x.report('replaying');
    });
    log.info({ revisions: replayed.revision - full.revision, resent: replayed.resent, ms: Math.round(performance.now() - t) }, 'deltas replayed');
    x.timings.replayMs = performance.now() - t;

    x.report('finalizing');
    t = performance.now();
    await temp.stop();
    temp = undefined;
    await restoreTemporaryDb(started.dataDir, replayed.revision, 'replayed', x.part, x.real);
    x.timings.finalizeMs = performance.now() - t;
    return replayed;
  } finally {
    if (temp) await temp.stop().catch(() => {});
  }
}

/** The rate this restore replayed at, for the backup leader's restore-time estimate; never fails the restore. */
async function noteReplayRate(opts: RestoreOptions, result: RestoreResult): Promise<void> {
  const sample = sampleOf(result, opts.measuredAs ?? 'restore', new Date());
  if (!opts.replayRatesFile || !sample) return;
  try {
    await recordReplaySample(opts.replayRatesFile, sample);
    opts.log.info({ file: opts.replayRatesFile, revisionsPerSecond: Math.round((sample.revisions * 1000) / sample.replayMs) }, 'replay rate recorded');
  } catch (err) {
    opts.log.warn({ file: opts.replayRatesFile, err: (err as Error).message }, 'the replay rate could not be recorded');
  }
}

const START_ATTEMPTS = 3;

/**
 * The full snapshot restored with a loopback identity and a temporary etcd started on it. Ports
 * are picked free but another process may take one first (etcd then exits at start): each attempt
 * restores afresh with new ports, since the peer URL is written into the data dir.
 */
async function startReplayEtcd(fullFile: string, work: string, tools: EtcdTools, log: Logger, noteEtcd: (pid: number | undefined) => Promise<void>): Promise<{ etcd: TemporaryEtcd; dataDir: string }> {
  return retryWithBackoff(
    async (attempt) => {
      const peerPort = await freeLoopbackPort();
      const peerURL = `http://127.0.0.1:${peerPort}`;
      const dataDir = join(work, `data-${attempt}`);
      await snapshotRestore({ file: fullFile, dataDir, name: TEMP_MEMBER, initialCluster: `${TEMP_MEMBER}=${peerURL}`, initialClusterToken: TEMP_MEMBER, initialAdvertisePeerUrls: [peerURL], tools });
      try {
        const etcd = await TemporaryEtcd.start({ dataDir, name: TEMP_MEMBER, peerPort, logFile: join(work, `etcd-${attempt}.log`), log, etcdBinary: tools.etcd });
        await noteEtcd(etcd.process.pid);
        return { etcd, dataDir };
      } catch (err) {
        await rm(dataDir, { recursive: true, force: true });
        throw err;
      }
    },
    {
      initialDelayMs: 100,
      maxDelayMs: 1_000,
      maxAttempts: START_ATTEMPTS,
      onFailure: (err, attempt) => log.warn({ attempt, err: err.message }, 'the temporary etcd did not start; retrying with other ports'),
    },
  );
}
