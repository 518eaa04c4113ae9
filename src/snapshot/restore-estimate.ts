/**
 * How long a restore of the chain in the store would take now, and whether that calls for a full
 * snapshot (`--restore-time-objective`). Pure: the snapshotter gathers the figures, this decides.
 *
 * A restore is a fixed part (fetch the full snapshot, restore it into a temporary etcd, start it and
 * wait for its first election, stop it and restore the result again) and a part that grows with
 * every revision written since the full snapshot: the replay, one transaction per revision. The
 * replay is bound by transactions, not bytes (a 9 MiB delta of small puts takes as long as its
 * revisions), so its part is revisions / rate, the rate measured by this member's own restores.
 */
import type { ReplaySample } from '../restore/replay-rates.js';

/** Revisions/s without a measurement: one transaction at a time on disk (issue 15 measured 1,134/s). */
export const DEFAULT_REPLAY_RATE = 1_000;
/** Start, first election (within 1 s: the temporary etcd's election timeout) and stop of the temporary etcd, with margin. */
export const STARTUP_SECONDS = 3;
/** The full snapshot's db is fetched, decompressed and restored twice at about this rate (bench: 74 MB in 1-2 s). */
export const FULL_BYTES_PER_SECOND = 50 * 1024 * 1024;
/** A replay shorter than this says more about warming up than about the rate. */
export const MIN_SAMPLE_REVISIONS = 1_000;
/** The newest measurements the rate is taken from; the slowest of them counts. */
const RECENT = 5;

export interface ChainSinceFull {
  /** Revision inside the chain's full snapshot. */
  fullRevision: number;
  /** Its db's size (0 when unknown). */
  fullDbBytes: number;
  /** The last revision the chain reaches (the newest uploaded delta). */
  lastRevision: number;
}

export interface ReplayRate {
  revisionsPerSecond: number;
  measured: boolean;
  /** Where the rate comes from, in words for /status. */
  source: string;
}

export interface RestoreEstimate {
  seconds: number;
  /** The fixed part: the full snapshot and the temporary etcd. */
  fullSeconds: number;
  /** Where the fixed part comes from, in words for /status. */
  fullSource: string;
  replaySeconds: number;
  /** Revisions to replay: those since the full snapshot. */
  revisions: number;
  fullRevision: number;
  rate: ReplayRate;
}

/** The slowest of the recent restores that replayed enough to measure; the default without one. */
export function replayRate(samples: readonly ReplaySample[]): ReplayRate {
  const usable = samples.filter((s) => s.revisions >= MIN_SAMPLE_REVISIONS && s.replayMs > 0).slice(-RECENT);
  if (usable.length === 0) {
    return {
      revisionsPerSecond: DEFAULT_REPLAY_RATE,
      measured: false,
      source: `default ${DEFAULT_REPLAY_RATE}/s: no restore, drill or compaction of at least ${MIN_SAMPLE_REVISIONS} revisions measured on this member yet`,
    };
  }
  const rate = Math.min(...usable.map((s) => (s.revisions * 1000) / s.replayMs));
  return { revisionsPerSecond: Math.round(rate), measured: true, source: `the slowest of the last ${usable.length} restores, drills or compactions measured on this member` };
}

/**
 * The fixed part for a db of `bytes`: what recent restores of a db at least a quarter that size took
 * here, scaled up (never down) by size, the slowest of them; the defaults without one. Scaling all
 * of it, the temporary etcd's start included, errs long; a db far smaller than this one says too
 * little about it (its time is mostly the start).
 */
export function fullPart(bytes: number, samples: readonly ReplaySample[]): { seconds: number; source: string } {
  const comparable = samples.filter((s) => s.fullDbBytes > 0 && s.fullMs > 0 && s.fullDbBytes * 4 >= bytes).slice(-RECENT);
  if (bytes === 0 || comparable.length === 0) {
    return {
      seconds: STARTUP_SECONDS + bytes / FULL_BYTES_PER_SECOND,
      source: `default: ${STARTUP_SECONDS} s for the temporary etcd plus the db at ${FULL_BYTES_PER_SECOND / 1024 / 1024} MiB/s, no restore of a db this size measured on this member yet`,
    };
  }
  const seconds = Math.max(...comparable.map((s) => (s.fullMs / 1000) * Math.max(1, bytes / s.fullDbBytes)));
  return { seconds, source: `the slowest of the last ${comparable.length} restores, drills or compactions of a db at least a quarter this size measured on this member, scaled to this db` };
}

export function estimateRestore(chain: ChainSinceFull, rate: ReplayRate, samples: readonly ReplaySample[] = []): RestoreEstimate {
  const revisions = Math.max(0, chain.lastRevision - chain.fullRevision);
  const full = fullPart(chain.fullDbBytes, samples);
  const replaySeconds = revisions / rate.revisionsPerSecond;
  const round = (s: number): number => Math.round(s * 10) / 10;
  return {
    seconds: round(full.seconds + replaySeconds),
    fullSeconds: round(full.seconds),
    fullSource: full.source,
    replaySeconds: round(replaySeconds),
    revisions,
    fullRevision: chain.fullRevision,
    rate,
  };
}

export interface ObjectiveCheck {
  estimate: RestoreEstimate | undefined;
  /** 0 disables the objective. */
  objectiveMs: number;
  minIntervalMs: number;
  /** When the last full snapshot (of any cause) started; undefined when this snapshotter took none. */
  lastFullAtMs: number | undefined;
  nowMs: number;
  fullRunning: boolean;
}

/**
 * Why a full snapshot is due for the objective, or undefined. Not while one runs, not sooner than
 * the minimum interval after the last one (a chain that outgrows the objective that fast would
 * otherwise keep etcd streaming snapshots), and not when only the fixed part passes the objective:
 * a full snapshot cannot shorten that, so taking one would only repeat at every interval.
 */
export function fullSnapshotForObjective(c: ObjectiveCheck): string | undefined {
  const e = c.estimate;
  if (c.objectiveMs <= 0 || !e || c.fullRunning || e.revisions === 0) return undefined;
  if (e.seconds * 1000 <= c.objectiveMs || e.fullSeconds * 1000 >= c.objectiveMs) return undefined;
  if (c.lastFullAtMs !== undefined && c.nowMs - c.lastFullAtMs < c.minIntervalMs) return undefined;
  return `restore estimate ${e.seconds} s passes the restore time objective of ${c.objectiveMs / 1000} s: ${e.revisions} revisions since the full snapshot at revision ${e.fullRevision} at ${e.rate.revisionsPerSecond} revisions/s (${e.rate.measured ? 'measured' : 'default'}) plus ${e.fullSeconds} s for the full snapshot`;
}
