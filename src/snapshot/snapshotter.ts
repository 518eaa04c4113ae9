import type { EtcdMember } from '../etcd/client.js';
import { readMemberStatus } from '../etcd/member-status.js';
import { retryWithBackoff } from '../resilience.js';
import cron, { type ScheduledTask } from 'node-cron';
import { join } from 'node:path';
import { openSnapshotStream } from '../etcd/snapshot-stream.js';
import type { Logger } from '../logger.js';
import { removeSpoolLeftovers } from '../snapstore/stage.js';
import type { SnapStore } from '../snapstore/types.js';
import { restorableChain, type Chain } from './chain.js';
import { DeltaSnapshotter, type DeltaContext, type DeltaSettings } from './delta-snapshotter.js';
import { takeFullSnapshot, type FullSnapshot } from './full.js';
import { gcLockView, type GcLockView } from './gc-locks.js';
import { collectGarbage, listSnapshotObjects } from './gc-run.js';
import type { Compression, SnapshotKind, SnapshotRef } from './names.js';
import type { SnapshotObserver, SnapshotRecord } from './record.js';
import type { RetentionPolicy } from './retention.js';
import { readReplaySamples, type ReplaySample } from '../restore/replay-rates.js';
import { estimateRestore, fullSnapshotForObjective, replayRate, type RestoreEstimate } from './restore-estimate.js';

export interface SnapshotterSettings {
  fullSchedule: string;
  /** 0 disables delta snapshots. */
  deltaPeriodMs: number;
  deltaMemoryLimit: number;
  compression: Compression;
  compressionLevel: number;
  spoolDir: string;
  retention: RetentionPolicy;
  /** 0 disables retention. */
  gcPeriodMs: number;
  /** --store-retention: each upload is locked this long; 0 disables. */
  storeRetentionMs?: number;
  /** A full snapshot is taken once a restore of the chain would take longer than this; 0 disables. */
  restoreTimeObjectiveMs?: number;
  /** ...but not sooner than this after the last full snapshot. */
  fullMinIntervalMs?: number;
  /** This member's measured replay rates (restore/replay-rates.ts); without one the default rate applies. */
  replayRatesFile?: string;
}

export interface SnapshotterDeps {
  store: SnapStore;
  /** Client bound to the local member: the one snapshots and the watch come from. */
  member: EtcdMember;
  memberName: string;
  log: Logger;
  observer?: SnapshotObserver;
  now?: () => Date;
}

/** A full snapshot that heals a broken chain is retried within these pauses until one succeeds. */
const HEAL_RETRY_MIN_MS = 2_000;
const HEAL_RETRY_MAX_MS = 60_000;

/** The status asked before a snapshotter starts; a frozen member fails the start, which is retried. */
const STATUS_TIMEOUT_MS = 10_000;

/** The version read before each snapshot; a snapshot never waits longer on it. */
const VERSION_TIMEOUT_MS = 3_000;

/** The replay rates file is read again after this long: a drill or restore may have run meanwhile. */
const RATE_REFRESH_MS = 30_000;

/** The full snapshot the chain in the store starts from, as far as the restore estimate needs it. */
interface ChainStart {
  revision: number;
  dbBytes: number;
  /** When it was started: the minimum interval counts from here. */
  atMs: number;
}

/** A snapshot of this kind is already being taken. */
export class SnapshotBusyError extends Error {
  override name = 'SnapshotBusyError';
  constructor(readonly kind: SnapshotKind) {
    super(`a ${kind} snapshot is already running`);
  }
}

/** The store's chain does not belong to the history of the etcd it would back up. */
export class ForeignChainError extends Error {
  override name = 'ForeignChainError';
}

/** The snapshots in the store, parsed; anything else in the bucket is ignored. */
export async function listSnapshots(store: SnapStore): Promise<SnapshotRef[]> {
  return (await listSnapshotObjects(store)).map((l) => l.ref);
}

/** How long the schedule leaves between two runs: a full snapshot older than that is overdue. */
export function schedulePeriodMs(schedule: string): number {
  const task = cron.createTask(schedule, () => {});
  try {
    const [a, b] = task.getNextRuns(2);
    return a && b ? b.getTime() - a.getTime() : 3600_000;
  } finally {
    void task.destroy();
  }
}

/**
 * The backup leader's work: a full snapshot on schedule (and at start when the last one is missing,
 * overdue, or followed by a gap), delta snapshots in between, retention. Also serves the snapshot
 * API's on-demand requests.
 */
export class Snapshotter {
  private readonly deltas: DeltaSnapshotter | undefined;
  private fullRunning: Promise<FullSnapshot> | undefined;
  private deltaRequested: Promise<SnapshotRecord | undefined> | undefined;
  private task: ScheduledTask | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private clusterId: string | undefined;
  /** The version of the backed-up member's etcd, as last read (shown in /status, recorded on each snapshot). */
  etcdVersion: string | undefined;
  /** Shared with the delta snapshotter, which learns the cluster ID once `start()` asked etcd. */
  private deltaContext: DeltaContext | undefined;
  private stopped = false;
  lastFull: FullSnapshot | undefined;
  /** The full snapshot requests wait for while another runs (see requestFull). */
  private queuedFull: Promise<FullSnapshot> | undefined;
  /** Why the snapshotter is not working, when it is not (shown in /status). */
  problem: string | undefined;
  private chainStart: ChainStart | undefined;
  /** This member's measured restores, as last read: the replay rate and the fixed part of a restore come from them. */
  private samples: readonly ReplaySample[] = [];
  private rateReadAtMs = -Infinity;
  /** What the last retention run deleted and what locks held (shown in /status). */
  gc: GcLockView | undefined;
  private heldBefore = -1;

  constructor(
    private readonly settings: SnapshotterSettings,
    private readonly deps: SnapshotterDeps,
  ) {
    if (settings.deltaPeriodMs > 0) {
      const deltaSettings: DeltaSettings = {
        periodMs: settings.deltaPeriodMs,
        memoryLimit: settings.deltaMemoryLimit,
        compression: settings.compression,
        compressionLevel: settings.compressionLevel,
        retentionMs: settings.storeRetentionMs ?? 0,
      };
      this.deltas = new DeltaSnapshotter(
        deltaSettings,
        (this.deltaContext = {
          store: deps.store,
          member: deps.member,
          memberName: deps.memberName,
          etcdVersion: () => this.readEtcdVersion(),
          log: deps.log.child({ part: 'delta' }),
          observer: {
            uploaded: (record) => {
              deps.observer?.uploaded(record);
              void this.checkRestoreObjective();
            },
            failed: (kind, err) => deps.observer?.failed(kind, err),
          },
          ...(deps.now ? { now: deps.now } : {}),
          chainBroken: (reason) => void this.healChain(reason),
        }),
      );
    }
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  /**
   * The version the backed-up member's etcd reports now, as each snapshot records it. A member that
   * does not answer in time keeps the last version read: the snapshot still comes from that etcd,
   * and a rolling upgrade restarts the member (and so this read) on its new release.
   */
  private async readEtcdVersion(): Promise<string | undefined> {
    try {
      this.etcdVersion = (await readMemberStatus(this.deps.member, VERSION_TIMEOUT_MS)).version || this.etcdVersion;
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message, etcdVersion: this.etcdVersion }, "etcd's version not read; the snapshot records the last one read");
    }
    return this.etcdVersion;
  }

  private spoolDir(): string {
    // One folder per member: sidecars sharing a machine must not sweep each other's spool files.
    return join(this.settings.spoolDir, `etcd-backup-sidecar-${this.deps.memberName}`);
  }

  get deltaState(): DeltaSnapshotter['state'] | undefined {
    return this.deltas?.state;
  }

  /**
   * Looks at the store and etcd, takes the full snapshot the chain needs (if any), then starts the
   * schedule, the delta watch and retention.
   */
  async start(): Promise<void> {
    await removeSpoolLeftovers(this.spoolDir());
    const status = await readMemberStatus(this.deps.member, STATUS_TIMEOUT_MS);
    this.clusterId = status.clusterId;
    this.etcdVersion = status.version || undefined;
    if (this.deltaContext) this.deltaContext.clusterId = this.clusterId;
    const etcdRevision = status.revision;
    const chain = restorableChain(await listSnapshots(this.deps.store));
    if (chain.full && chain.lastRevision > etcdRevision) {
      this.problem = `the store's chain reaches revision ${chain.lastRevision} but etcd is at ${etcdRevision}: these backups belong to another history of this cluster (restored to an older point, or another cluster). Back up to a new prefix, or restore from them.`;
      throw new ForeignChainError(this.problem);
    }
    this.deps.observer?.chainRead?.(chain);
    const reason = this.fullNeededAtStart(chain) ?? (await this.otherClusterChain(chain));
    // Stopped while asking (the backup role was lost): nothing may be scheduled on a stopped snapshotter.
    if (this.stopped) return;
    this.task ??= cron.schedule(this.settings.fullSchedule, () => void this.takeFull('schedule').catch(() => {}), { name: `full-snapshot-${this.deps.memberName}` });
    if (this.settings.gcPeriodMs > 0 && !this.gcTimer) {
      this.gcTimer = setInterval(() => void this.collectGarbage().catch((err: Error) => this.deps.log.error({ err: err.message }, 'retention failed')), this.settings.gcPeriodMs);
      this.gcTimer.unref();
    }
    if (reason) {
      this.deps.log.info({ reason }, 'full snapshot needed at start');
      await this.takeFull(reason);
    } else {
      this.deps.log.info({ full: chain.full?.name, lastRevision: chain.lastRevision }, 'continuing the chain in the store');
      if (chain.full) this.chainStart = { revision: chain.full.lastRevision, dbBytes: await this.dbBytesOf(chain.full.name), atMs: chain.full.createdAt.getTime() };
      if (!this.stopped) this.deltas?.resumeAfter(chain.lastRevision);
    }
  }

  /**
   * A chain started by another cluster (this one was restored as a new one-member cluster, so its
   * ID changed) is not extended: a restore refuses a chain whose objects name two clusters.
   */
  private async otherClusterChain(chain: Chain): Promise<string | undefined> {
    if (!chain.full || !this.clusterId) return undefined;
    const theirs = (await this.deps.store.head(chain.full.name))?.metadata?.['ebs-cluster-id'];
    return theirs && theirs !== this.clusterId ? `the latest full snapshot is of cluster ${theirs}, this member is in cluster ${this.clusterId}` : undefined;
  }

  private fullNeededAtStart(chain: Chain): string | undefined {
    if (!chain.full) return 'no full snapshot in the store';
    if (!chain.contiguous) return `the chain has a gap (revisions ${chain.gaps.map((g) => `${g.from}-${g.to}`).join(', ')} are missing)`;
    const age = this.now().getTime() - chain.full.createdAt.getTime();
    const period = schedulePeriodMs(this.settings.fullSchedule);
    if (age > period) return `the latest full snapshot is ${Math.round(age / 1000)} s old, more than the schedule's period of ${Math.round(period / 1000)} s`;
    return undefined;
  }

  /**
   * A full snapshot that starts after this call: when one runs already (the start-up one, the
   * schedule's), it is waited for and one more is taken, shared by every request that arrived
   * meanwhile. A request answered with a snapshot of an older revision than it asked for would
   * tell a script "backed up" for writes that are not.
   */
  requestFull(reason: string): Promise<FullSnapshot> {
    if (!this.fullRunning) return this.takeFull(reason);
    this.queuedFull ??= this.fullRunning
      .catch(() => undefined)
      .then(() => {
        this.queuedFull = undefined;
        // One that started meanwhile (the schedule) started after the request too.
        return this.fullRunning ?? this.takeFull(reason);
      });
    return this.queuedFull;
  }

  /** Takes a full snapshot now; throws SnapshotBusyError when one is running. */
  takeFull(reason: string): Promise<FullSnapshot> {
    if (this.stopped) return Promise.reject(new Error('the snapshotter is stopping'));
    if (this.fullRunning) return Promise.reject(new SnapshotBusyError('full'));
    const log = this.deps.log.child({ part: 'full' });
    log.info({ reason }, 'full snapshot starting');
    this.fullRunning = takeFullSnapshot(
      this.deps.store,
      {
        open: () => openSnapshotStream(this.deps.member),
        member: this.deps.memberName,
        etcdVersion: () => this.readEtcdVersion(),
        ...(this.clusterId ? { clusterId: this.clusterId } : {}),
      },
      { compression: this.settings.compression, compressionLevel: this.settings.compressionLevel, spoolDir: this.spoolDir(), retentionMs: this.settings.storeRetentionMs ?? 0 },
      () => this.now(),
    )
      .then((full) => {
        this.lastFull = full;
        this.chainStart = { revision: full.lastRevision, dbBytes: full.uncompressedSize, atMs: Date.parse(full.createdAt) };
        this.problem = undefined;
        log.info({ snapshot: full.name, revision: full.lastRevision, size: full.size, dbSize: full.uncompressedSize, durationMs: full.durationMs }, 'full snapshot uploaded');
        this.deps.observer?.uploaded(full);
        if (!this.stopped) this.deltas?.resumeAfter(full.lastRevision);
        return full;
      })
      .catch((err: Error) => {
        log.error({ err: err.message, reason }, 'full snapshot failed');
        this.problem = `last full snapshot failed: ${err.message}`;
        this.deps.observer?.failed('full', err);
        throw err;
      })
      .finally(() => {
        this.fullRunning = undefined;
      });
    return this.fullRunning;
  }

  /**
   * A full snapshot that lets the deltas continue, retried until one succeeds: until then no delta
   * can be uploaded, so waiting for the next scheduled one would leave the chain open for an hour.
   */
  private async healChain(reason: string): Promise<void> {
    try {
      await retryWithBackoff(() => this.takeFull(`chain broken: ${reason}`), {
        initialDelayMs: HEAL_RETRY_MIN_MS,
        maxDelayMs: HEAL_RETRY_MAX_MS,
        retryWhile: (err) => !this.stopped && !(err instanceof SnapshotBusyError),
      });
    } catch (err) {
      // The running one resumes the deltas when it is done; if it is too old to, they break again.
      if (err instanceof SnapshotBusyError) await this.fullRunning?.catch(() => {});
    }
  }

  /** The db size a full snapshot in the store holds: ours record it; else its stored size, a lower bound. */
  private async dbBytesOf(name: string): Promise<number> {
    const head = await this.deps.store.head(name).catch(() => undefined);
    const recorded = Number(head?.metadata['ebs-db-size']);
    return Number.isSafeInteger(recorded) && recorded > 0 ? recorded : (head?.size ?? 0);
  }

  get restoreTimeObjectiveMs(): number {
    return this.settings.restoreTimeObjectiveMs ?? 0;
  }

  /** How long a restore of the chain as stored now would take; undefined before the chain has a full snapshot. */
  get restoreEstimate(): RestoreEstimate | undefined {
    const start = this.chainStart;
    if (!start) return undefined;
    const lastRevision = Math.max(start.revision, this.deltas?.state.uploadedRevision ?? 0);
    return estimateRestore({ fullRevision: start.revision, fullDbBytes: start.dbBytes, lastRevision }, replayRate(this.samples), this.samples);
  }

  /** After every delta upload: a full snapshot when the chain would now restore slower than the objective. */
  private async checkRestoreObjective(): Promise<void> {
    const objectiveMs = this.settings.restoreTimeObjectiveMs ?? 0;
    if (objectiveMs <= 0 || this.stopped) return;
    const nowMs = this.now().getTime();
    if (this.settings.replayRatesFile && nowMs - this.rateReadAtMs >= RATE_REFRESH_MS) {
      this.rateReadAtMs = nowMs;
      const read = await readReplaySamples(this.settings.replayRatesFile);
      if (read.problem) this.deps.log.warn({ problem: read.problem }, 'replay rates unreadable; the default rate applies');
      this.samples = read.samples;
    }
    const reason = fullSnapshotForObjective({
      estimate: this.restoreEstimate,
      objectiveMs,
      minIntervalMs: this.settings.fullMinIntervalMs ?? 0,
      lastFullAtMs: this.chainStart?.atMs,
      nowMs,
      fullRunning: this.fullRunning !== undefined || this.queuedFull !== undefined,
    });
    if (!reason || this.stopped) return;
    this.deps.log.info({ reason, estimate: this.restoreEstimate }, 'restore time objective: full snapshot due');
    await this.takeFull(reason).catch(() => {});
  }

  /** Uploads the events collected so far as a delta now; throws SnapshotBusyError when a request for one is running. */
  takeDelta(): Promise<SnapshotRecord | undefined> {
    if (!this.deltas) return Promise.reject(new Error('delta snapshots are disabled (--delta-snapshot-period=0)'));
    if (this.deltaRequested) return Promise.reject(new SnapshotBusyError('delta'));
    this.deltaRequested = this.deltas.flush().finally(() => {
      this.deltaRequested = undefined;
    });
    return this.deltaRequested;
  }

  /**
   * Applies the retention policy once, sparing what locks hold; returns the names deleted. One log
   * line per run that deleted something or saw the held set change, never one per object.
   */
  async collectGarbage(): Promise<string[]> {
    const listing = await listSnapshotObjects(this.deps.store);
    // The listing retention needs anyway tells whether the chain is still whole (an object deleted
    // or lost behind the sidecar's back, another leader's upload), at no further cost to the store.
    this.deps.observer?.chainRead?.(restorableChain(listing.map((l) => l.ref)));
    const now = this.now();
    const report = await collectGarbage(this.deps.store, listing, { retention: this.settings.retention, storeRetentionMs: this.settings.storeRetentionMs ?? 0 }, now);
    this.gc = gcLockView(report.held, report.deleted.length, now);
    this.deps.observer?.gcRan?.(this.gc);
    if (report.deleted.length > 0 || report.held.length !== this.heldBefore) {
      // Undated: a refusal the store did not explain (a legal hold, a bucket policy, or a missing permission).
      const undated = report.held.filter((h) => !h.retainUntil).length;
      const fields = { deleted: report.deleted.length, kept: report.kept, heldByLock: report.held.length, heldWithoutDate: undated, ...(this.gc.next ? { next: this.gc.next } : {}) };
      if (undated > 0)
        this.deps.log.warn(fields, 'retention ran; the store refused to delete some snapshots without saying until when (legal hold, retention policy, or missing delete permission): they are held');
      else this.deps.log.info(fields, report.held.length > 0 ? 'retention ran; locked snapshots wait for their lock to end' : 'retention deleted old snapshots');
    }
    this.heldBefore = report.held.length;
    return report.deleted;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.task) await this.task.destroy();
    if (this.gcTimer) clearInterval(this.gcTimer);
    await this.deltas?.stop();
    await this.fullRunning?.catch(() => {});
  }
}
