/**
 * Keeps a second store (a bucket in another region or cloud) in step with the backup store. The
 * backup leader copies what the secondary lacks after each upload and every period, through the
 * same checked, resumable copy as the `copy` command, and applies the same retention policy there.
 * A deletion in the primary is never mirrored: the secondary is for the day the primary is lost or
 * emptied by mistake. A secondary that is down never holds up a backup: its sync fails, is counted
 * and tried again at the next upload or period.
 */
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { copySnapshots, type CopyReport } from './copy.js';
import { collectGarbage, listSnapshotObjects, type GcSettings } from './gc-run.js';
import { planRetention } from './retention.js';

export interface SecondarySyncRun {
  at: string;
  durationMs: number;
  copied: number;
  skipped: number;
  bytes: number;
  /** Removed by the retention policy in the secondary. */
  deleted: number;
}

export interface SecondarySyncState {
  url: string;
  running: boolean;
  lastSuccess?: SecondarySyncRun;
  lastError?: { at: string; message: string };
  /** Syncs that failed since the last one that succeeded. */
  failuresInARow: number;
}

export interface SecondarySyncObserver {
  synced(run: SecondarySyncRun): void;
  failed(err: Error): void;
}

export interface SecondarySyncSettings {
  periodMs: number;
  /** The primary's retention, applied to the secondary's own listing (locks held); absent: keep everything. */
  gc?: GcSettings;
  /** --store-retention: copies are locked as their originals are. */
  storeRetentionMs?: number;
}

export interface SecondarySyncDeps {
  primary: SnapStore;
  secondary: SnapStore;
  /** Only the backup leader's sidecar syncs, so two sidecars never copy the same objects. */
  leads: () => boolean;
  log: Logger;
  observer?: SecondarySyncObserver;
  now?: () => Date;
}

export class SecondarySync {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** A kick that arrived during a run: one more run follows it, however many kicks came. */
  private again = false;
  private readonly abort = new AbortController();
  private readonly state: SecondarySyncState;

  constructor(
    private readonly deps: SecondarySyncDeps,
    private readonly settings: SecondarySyncSettings,
  ) {
    this.state = { url: deps.secondary.url, running: false, failuresInARow: 0 };
  }

  start(): void {
    if (this.timer || this.settings.periodMs <= 0) return;
    this.timer = setInterval(() => this.kick(), this.settings.periodMs);
    this.timer.unref();
  }

  /** Asks for a sync soon (an upload just finished); runs never overlap. */
  kick(): void {
    if (this.abort.signal.aborted || !this.deps.leads()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  status(): SecondarySyncState {
    return { ...this.state, running: this.running !== undefined };
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.once();
      } catch {
        // once() recorded and logged it; the next kick or period tries again.
      }
    } while (this.again && !this.abort.signal.aborted && this.deps.leads());
  }

  private async once(): Promise<SecondarySyncRun> {
    const started = Date.now();
    const now = this.deps.now?.() ?? new Date();
    try {
      const gc = this.settings.gc;
      const report = await copySnapshots(this.deps.primary, this.deps.secondary, {
        log: this.deps.log,
        signal: this.abort.signal,
        // What the secondary's retention would delete at once is not copied: else a primary that
        // cannot delete (no permission, a hold) has it copied back and deleted at every sync.
        ...(gc ? { keep: (listing) => new Set(planRetention(listing, gc.retention, now).keep.map((k) => k.name)) } : {}),
        ...(this.settings.storeRetentionMs ? { storeRetentionMs: this.settings.storeRetentionMs } : {}),
      });
      const deleted = await this.applyRetention(now);
      const run = runOf(report, deleted, now, Date.now() - started);
      if (this.state.failuresInARow > 0) this.deps.log.info({ secondary: this.state.url, failed: this.state.failuresInARow }, 'secondary store in sync again');
      this.state.lastSuccess = run;
      this.state.failuresInARow = 0;
      if (run.copied > 0 || run.deleted > 0) this.deps.log.info({ secondary: this.state.url, ...run }, 'secondary store synced');
      this.deps.observer?.synced(run);
      return run;
    } catch (err) {
      const e = err as Error;
      this.state.lastError = { at: now.toISOString(), message: e.message };
      this.state.failuresInARow += 1;
      // One warning per outage, not one per period: the metric and /status carry the rest.
      if (this.state.failuresInARow === 1) this.deps.log.warn({ secondary: this.state.url, err: e.message }, 'secondary store sync failed; backups go on, the sync retries');
      this.deps.observer?.failed(e);
      throw e;
    }
  }

  private async applyRetention(now: Date): Promise<number> {
    if (!this.settings.gc) return 0;
    this.abort.signal.throwIfAborted();
    return (await collectGarbage(this.deps.secondary, await listSnapshotObjects(this.deps.secondary), this.settings.gc, now)).deleted.length;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.running;
  }
}

function runOf(report: CopyReport, deleted: number, at: Date, durationMs: number): SecondarySyncRun {
  return { at: at.toISOString(), durationMs, copied: report.copied.length, skipped: report.skipped.length, bytes: report.bytes, deleted };
}
