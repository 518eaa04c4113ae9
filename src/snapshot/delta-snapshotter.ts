import type { EtcdMember } from '../etcd/client.js';
import { pipeline, Readable } from 'node:stream';
import { KeyspaceWatch, type WatchedEvent, type WatchEnd } from '../etcd/watch.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { compressStream } from './compression.js';
import { DeltaBuilder } from './delta-format.js';
import { snapshotName, type Compression } from './names.js';
import { objectMetadata, type SnapshotObserver, type SnapshotRecord } from './record.js';
import { retryWithBackoff, settleWithin } from '../resilience.js';

export interface DeltaSettings {
  periodMs: number;
  memoryLimit: number;
  compression: Compression;
  compressionLevel: number;
  /** --store-retention: each delta is locked this long from its creation; 0: not locked. */
  retentionMs?: number;
}

export interface DeltaContext {
  store: SnapStore;
  /** The member whose keyspace is watched. */
  member: EtcdMember;
  memberName: string;
  clusterId?: string;
  /** The version of the watched member's etcd, read at each upload (it changes in a rolling upgrade). */
  etcdVersion?: () => Promise<string | undefined>;
  log: Logger;
  observer?: SnapshotObserver;
  now?: () => Date;
  /**
   * The chain cannot be continued by deltas (events compacted away, or a revision skipped): a full
   * snapshot must be taken, after which `resumeAfter` is called with its revision.
   */
  chainBroken(reason: string): void;
}

/** Events sealed into a delta, waiting for (or in) their upload. */
interface SealedDelta {
  payload: Buffer[];
  startRevision: number;
  lastRevision: number;
  events: number;
  bytes: number;
  createdAt: Date;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5_000;
/** A failed upload is retried within these pauses for as long as this member backs up. */
const UPLOAD_RETRY_MIN_MS = 1_000;
const UPLOAD_RETRY_MAX_MS = 30_000;

/**
 * Turns a watch of the whole keyspace into delta snapshots: events are collected for
 * `--delta-snapshot-period` (or until `--delta-snapshot-memory-limit` bytes) and uploaded as one
 * delta while the next one is collected. At most one delta uploads at a time and at most one
 * collects, so memory stays bounded: when both are full the watch is closed and reopened from the
 * next revision once the upload is done (anchor issue #152 was unbounded growth here). Every
 * revision after the chain's end must arrive exactly once and in order; anything else breaks the
 * chain, which is reported so that a full snapshot heals it (never a silent skip).
 */
export class DeltaSnapshotter {
  private builder = new DeltaBuilder();
  /** Highest revision received or known to be stored; the next event must be this + 1. */
  private seenRevision = 0;
  /** Highest revision of the last uploaded delta (or full snapshot noted through `resumeAfter`). */
  private uploadedRevision = 0;
  /** etcd's revision in the last watch response: how far behind the uploads are. */
  private etcdRevision = 0;
  private uploading: Promise<void> | undefined;
  private watch: KeyspaceWatch | undefined;
  private opening = false;
  private paused = false;
  private broken = false;
  private running = false;
  private retryMs = RETRY_MIN_MS;
  private timer: NodeJS.Timeout | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private lastUpload: SnapshotRecord | undefined;

  constructor(
    private readonly settings: DeltaSettings,
    private readonly ctx: DeltaContext,
  ) {}

  private now(): Date {
    return this.ctx.now?.() ?? new Date();
  }

  /** Starts (or restarts) collecting after `revision`, the last revision the stored chain holds. */
  resumeAfter(revision: number): void {
    this.running = true;
    this.broken = false;
    this.uploadedRevision = Math.max(this.uploadedRevision, revision);
    // Events up to the full snapshot's revision are in it already; a watch behind it skips them,
    // and collected ones are dropped when the full snapshot holds all of them.
    if (this.seenRevision < revision) this.seenRevision = revision;
    const collected = this.builder.lastRevision;
    if (collected !== undefined && collected <= revision) this.builder.finish();
    this.timer ??= setInterval(() => void this.flush(), this.settings.periodMs);
    void this.openWatch();
  }

  get state(): { uploadedRevision: number; bufferedRevision: number; etcdRevision: number; bufferedBytes: number; lastUpload: SnapshotRecord | undefined } {
    return { uploadedRevision: this.uploadedRevision, bufferedRevision: this.seenRevision, etcdRevision: this.etcdRevision, bufferedBytes: this.builder.byteLength, lastUpload: this.lastUpload };
  }

  private async openWatch(): Promise<void> {
    // One watch at a time: two would deliver the same revisions twice.
    if (!this.running || this.paused || this.broken || this.watch || this.opening) return;
    this.opening = true;
    const from = this.seenRevision + 1;
    try {
      const watch = await KeyspaceWatch.open(this.ctx.member, from, {
        events: (events, headerRevision) => this.receive(events, headerRevision),
        ended: (end) => this.watchEnded(end),
      });
      this.retryMs = RETRY_MIN_MS;
      // Paused, broken or stopped while it opened: it must not stay open unseen.
      if (!this.running || this.paused || this.broken) {
        void watch.close();
        return;
      }
      this.watch = watch;
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message, fromRevision: from }, 'delta snapshots: watch could not be opened; retrying');
      this.scheduleReopen();
    } finally {
      this.opening = false;
    }
  }

  private scheduleReopen(): void {
    if (!this.running || this.reopenTimer) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      void this.openWatch();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private watchEnded(end: WatchEnd): void {
    this.watch = undefined;
    if (!this.running) return;
    if (end.reason === 'compacted') {
      this.breakChain(`watch from revision ${this.seenRevision + 1}: ${end.message}`);
      return;
    }
    this.ctx.log.warn({ reason: end.message, fromRevision: this.seenRevision + 1 }, 'delta snapshots: watch ended; reopening from the next revision');
    this.scheduleReopen();
  }

  private breakChain(reason: string): void {
    if (this.broken) return;
    this.broken = true;
    void this.watch?.close();
    this.watch = undefined;
    this.ctx.log.error({ reason, lastRevision: this.seenRevision }, 'delta snapshots: the chain cannot continue; a full snapshot is needed');
    // What was collected is still contiguous: upload it, then let a full snapshot take over.
    void this.flush();
    this.ctx.chainBroken(reason);
  }

  private receive(events: WatchedEvent[], headerRevision: number): void {
    this.etcdRevision = Math.max(this.etcdRevision, headerRevision);
    if (this.broken || this.paused) return;
    const time = this.now().toISOString();
    for (const ev of events) {
      const rev = ev.modRevision;
      const continuesTxn = rev === this.seenRevision && this.builder.lastRevision === rev;
      if (rev <= this.seenRevision && !continuesTxn) continue; // already stored (full snapshot) or replayed
      if (rev > this.seenRevision + 1) {
        this.breakChain(`watch skipped from revision ${this.seenRevision} to ${rev}`);
        return;
      }
      const { type, ...kv } = ev;
      this.builder.add({ type, kv, time });
      this.seenRevision = rev;
    }
    if (this.builder.byteLength >= this.settings.memoryLimit) {
      if (this.uploading) this.pause();
      else void this.flush();
    }
  }

  /** Both a delta uploading and a full one collecting: stop the watch until the upload is done. */
  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.ctx.log.info({ bufferedBytes: this.builder.byteLength, revision: this.seenRevision }, 'delta snapshots: uploads are behind; watch paused');
    void this.watch?.close();
    this.watch = undefined;
  }

  private seal(): SealedDelta | undefined {
    const first = this.builder.firstRevision;
    const last = this.builder.lastRevision;
    if (first === undefined || last === undefined) return undefined;
    const events = this.builder.eventCount;
    const bytes = this.builder.byteLength;
    const payload = this.builder.finish();
    return { payload, startRevision: first, lastRevision: last, events, bytes, createdAt: this.now() };
  }

  /**
   * Uploads what was collected, after any upload in flight. Resolves with the delta uploaded, or
   * undefined when there were no new events.
   */
  async flush(): Promise<SnapshotRecord | undefined> {
    while (this.uploading) await this.uploading;
    const sealed = this.seal();
    if (!sealed) return undefined;
    let record: SnapshotRecord | undefined;
    this.uploading = (async () => {
      record = await this.uploadWithRetry(sealed);
    })().finally(() => {
      this.uploading = undefined;
      if (this.paused) {
        this.paused = false;
        void this.flush();
        void this.openWatch();
      }
    });
    await this.uploading;
    return record;
  }

  private async uploadWithRetry(sealed: SealedDelta): Promise<SnapshotRecord | undefined> {
    try {
      const record = await retryWithBackoff(() => this.upload(sealed), {
        initialDelayMs: UPLOAD_RETRY_MIN_MS,
        maxDelayMs: UPLOAD_RETRY_MAX_MS,
        retryWhile: () => this.running,
        onFailure: (err) => {
          this.ctx.observer?.failed('delta', err);
          this.ctx.log.error({ err: err.message, startRevision: sealed.startRevision, lastRevision: sealed.lastRevision }, 'delta snapshot upload failed; retrying');
        },
      });
      this.uploadedRevision = Math.max(this.uploadedRevision, sealed.lastRevision);
      this.lastUpload = record;
      this.ctx.observer?.uploaded(record);
      this.ctx.log.info({ snapshot: record.name, events: record.events, size: record.size, durationMs: record.durationMs }, 'delta snapshot uploaded');
      return record;
    } catch {
      // Stopped while failing: the events stay unsent; the next leader's chain starts from the store.
      return undefined;
    }
  }

  private async upload(sealed: SealedDelta): Promise<SnapshotRecord> {
    const t0 = performance.now();
    // Read at the upload, after every event of the delta: in an upgrade it names the newer release.
    const etcdVersion = await this.ctx.etcdVersion?.();
    // Streamed from the collected chunks: no copy of the whole delta next to them (one was made
    // here before, up to --delta-snapshot-memory-limit more at the peak of a write burst).
    const body = pipeline(Readable.from(sealed.payload, { objectMode: false }), compressStream(this.settings.compression, this.settings.compressionLevel), () => {});
    const name = snapshotName({ kind: 'delta', startRevision: sealed.startRevision, lastRevision: sealed.lastRevision, createdAt: sealed.createdAt, compression: this.settings.compression });
    const put = await this.ctx.store.put(name, body, {
      metadata: objectMetadata({ kind: 'delta', events: sealed.events, 'cluster-id': this.ctx.clusterId, member: this.ctx.memberName, 'etcd-version': etcdVersion }),
      ...(this.settings.retentionMs ? { retainUntil: new Date(sealed.createdAt.getTime() + this.settings.retentionMs) } : {}),
    });
    return {
      name,
      kind: 'delta',
      startRevision: sealed.startRevision,
      lastRevision: sealed.lastRevision,
      createdAt: sealed.createdAt.toISOString(),
      compression: this.settings.compression,
      size: put.size,
      sha256: put.sha256,
      uncompressedSize: sealed.bytes,
      events: sealed.events,
      durationMs: Math.round(performance.now() - t0),
      ...(etcdVersion ? { etcdVersion } : {}),
    };
  }

  /** Stops watching; what was collected is uploaded first (bounded by `timeoutMs`). */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.timer = undefined;
    this.reopenTimer = undefined;
    await this.watch?.close();
    this.watch = undefined;
    const last = this.flush();
    this.running = false;
    await settleWithin(last, timeoutMs);
  }
}
