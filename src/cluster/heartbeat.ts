import { Readable } from 'node:stream';
import type { Logger } from '../logger.js';
import { retryWithBackoff } from '../resilience.js';
import { listAll, StoreError, type SnapStore } from '../snapstore/types.js';
import { HeartbeatAges, type SeenHeartbeat } from './heartbeat-ages.js';
import { HEARTBEAT_DIR, heartbeatName, parseHeartbeat, type Heartbeat, type WaitingReport } from './heartbeat-format.js';

export { HEARTBEAT_DIR, heartbeatName, parseHeartbeat, type Heartbeat, type WaitingReport } from './heartbeat-format.js';

/** What a heartbeat says of the member's identity and progress, kept while etcd is down. */
export type MemberProgress = Pick<Heartbeat, 'memberId' | 'clusterId' | 'raftIndex' | 'revision'>;

function progressOf(hb: Partial<Heartbeat>): MemberProgress {
  const p: MemberProgress = {};
  if (hb.memberId !== undefined) p.memberId = hb.memberId;
  if (hb.clusterId !== undefined) p.clusterId = hb.clusterId;
  if (hb.raftIndex !== undefined) p.raftIndex = hb.raftIndex;
  if (hb.revision !== undefined) p.revision = hb.revision;
  return p;
}

/**
 * The heartbeat to write: the member's own facts, and where it did not answer (etcd down, not yet
 * started), the identity and raft index it last reported. Dropping them would erase the record the
 * initializer uses to catch a data dir that went back in time (seed 004) the moment a sidecar
 * restarts. Progress of another member ID (the member was replaced) is not carried over.
 */
export function withCarriedProgress(facts: HeartbeatFacts, carried: MemberProgress): HeartbeatFacts {
  const sameMember = facts.memberId === undefined || carried.memberId === undefined || facts.memberId === carried.memberId;
  return sameMember ? { ...carried, ...facts } : facts;
}

async function readText(store: SnapStore, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(name)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Every member's last heartbeat, one listing plus one small GET per member. Objects that are not
 * heartbeats (garbage, half-edited by hand, another tool's files) are skipped and logged: one bad
 * object must not hide the others.
 */
export async function readHeartbeats(store: SnapStore, log?: Logger): Promise<Heartbeat[]> {
  const out: Heartbeat[] = [];
  for await (const o of listAll(store, `${HEARTBEAT_DIR}/`)) {
    if (!o.name.endsWith('.json')) continue;
    let parsed: Heartbeat | string | undefined;
    let lastErr: Error | undefined;
    // Heartbeats are overwritten every period: a read racing the writer's replace (the local store
    // swaps checksum and bytes in two renames) fails its checksum once; the next read is whole.
    try {
      parsed = await retryWithBackoff(async () => parseHeartbeat(await readText(store, o.name)), { initialDelayMs: 50, maxDelayMs: 100, maxAttempts: 3 });
    } catch (err) {
      lastErr = err as Error;
    }
    if (parsed === undefined) {
      // Deleted between list and get, or unreadable: the same as absent.
      log?.warn({ object: o.name, err: lastErr?.message }, 'heartbeat unreadable; skipped');
      continue;
    }
    if (typeof parsed === 'string') log?.warn({ object: o.name, problem: parsed }, 'not a heartbeat; skipped');
    else out.push(parsed);
  }
  return out;
}

/**
 * The API URL other sidecars reach this one at when --advertise-api-url is not set: the listen
 * address, except that a wildcard bind is replaced by the host etcd advertises to clients (the
 * sidecar shares the pod's or VM's address with its member).
 */
export function defaultApiURL(listenHost: string, port: number, advertiseClientUrls: readonly string[]): string {
  const wildcard = listenHost === '' || listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '[::]';
  let host = listenHost.includes(':') && !listenHost.startsWith('[') ? `[${listenHost}]` : listenHost;
  if (wildcard) {
    const first = advertiseClientUrls[0];
    host = first ? new URL(first).hostname : '127.0.0.1';
  }
  return `http://${host}:${port}`;
}

/** The facts a heartbeat carries besides its time; the role loop or the initializer supplies them. */
export type HeartbeatFacts = Omit<Heartbeat, 'time'>;

export interface HeartbeatWriterOptions {
  periodMs: number;
  log: Logger;
  now?: () => Date;
  /** Called after each write attempt (metrics). */
  written?: (hb: Heartbeat, err?: Error) => void;
}

/**
 * Writes `members/<name>.json` every period: one small PUT (the store makes it all-or-nothing).
 * Writes never overlap and each is aborted after one period, so a slow store delays only the
 * heartbeat, never the role loop or the snapshots.
 */
export class HeartbeatWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  /** Undefined until the previous heartbeat of this member was read back from the store. */
  private carried: MemberProgress | undefined;
  lastWritten: Heartbeat | undefined;
  lastError: string | undefined;
  /** Set by the initializer while it waits for a cluster with quorum; cleared when it acts. */
  waiting: WaitingReport | undefined;

  constructor(
    private readonly store: SnapStore,
    private readonly facts: () => HeartbeatFacts | Promise<HeartbeatFacts>,
    private readonly opts: HeartbeatWriterOptions,
  ) {}

  start(): void {
    const tick = (): void => {
      if (!this.writing) void this.writeNow().catch(() => {});
    };
    tick();
    this.timer = setInterval(tick, this.opts.periodMs);
    this.timer.unref();
  }

  /**
   * Writes a heartbeat with the facts as they are now; rejects when the store refused it. A write in
   * flight was built from older facts (the role or waiting report a caller just changed), so one
   * more write is queued after it, shared by every caller meanwhile; writes never overlap.
   */
  writeNow(): Promise<void> {
    if (!this.writing) return this.startWrite();
    this.queued ??= this.writing
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.startWrite();
      });
    return this.queued;
  }

  private startWrite(): Promise<void> {
    this.writing = this.write().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  /**
   * Replaces what is carried while etcd is down: after a restore the data dir starts a new raft log,
   * and the old raft index would make it look as if it went back in time.
   */
  remember(progress: MemberProgress): void {
    this.carried = { ...progress };
  }

  private async previous(name: string): Promise<MemberProgress> {
    try {
      const parsed = parseHeartbeat(await readText(this.store, heartbeatName(name)));
      return typeof parsed === 'string' ? {} : progressOf(parsed);
    } catch (err) {
      if (err instanceof StoreError && err.code === 'not_found') return {};
      if (err instanceof StoreError && err.code === 'checksum_mismatch') {
        // Torn for good (a writer killed mid-put): no later read will return the record, and
        // skipping every beat would make this member look dead to the others forever.
        this.opts.log.warn({ err: err.message }, 'previous heartbeat is corrupt; writing a new one without its recorded progress');
        return {};
      }
      // Writing now would erase a record that could not be read (the store failed): skip this beat.
      throw new Error(`previous heartbeat unreadable: ${(err as Error).message}`, { cause: err });
    }
  }

  private async write(): Promise<void> {
    const facts = await this.facts();
    try {
      if (this.carried === undefined) {
        const previous = await this.previous(facts.name);
        // remember() may have run during the read: what it set is newer than the store's record.
        this.carried ??= previous;
      }
    } catch (err) {
      this.lastError = (err as Error).message;
      this.opts.log.warn({ err: this.lastError }, 'heartbeat not written');
      throw err;
    }
    const hb: Heartbeat = { ...withCarriedProgress(facts, this.carried), time: (this.opts.now?.() ?? new Date()).toISOString() };
    // The report of a member that started without a quorum stands until its etcd is in one.
    if (this.waiting && facts.inQuorum === true) this.waiting = undefined;
    if (this.waiting) hb.waiting = this.waiting;
    this.carried = progressOf(hb);
    const signal = AbortSignal.timeout(Math.max(this.opts.periodMs, 1_000));
    try {
      await this.store.put(heartbeatName(hb.name), Readable.from([Buffer.from(JSON.stringify(hb))]), { signal, metadata: { kind: 'heartbeat' } });
      this.lastWritten = hb;
      this.lastError = undefined;
      this.opts.written?.(hb);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.opts.log.warn({ err: this.lastError }, 'heartbeat not written');
      this.opts.written?.(hb, err as Error);
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.writing?.catch(() => {});
  }
}

/**
 * The other sidecars as their heartbeats describe them, re-read every period on its own timer:
 * the API forwards to the leader's URL from here without touching the store on each request.
 */
export class HeartbeatDirectory {
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private known: Heartbeat[] = [];
  readAt: Date | undefined;
  lastError: string | undefined;

  constructor(
    private readonly store: SnapStore,
    private readonly opts: { periodMs: number; log: Logger; ages: HeartbeatAges; onRead?: (heartbeats: readonly SeenHeartbeat[]) => void },
  ) {}

  /** The heartbeats of the last read, aged by this reader's clock as of now. */
  latest(): SeenHeartbeat[] {
    return this.known.map((h) => ({ ...h, ageMs: this.opts.ages.ageMs(h.name) ?? 0 }));
  }

  refresh(): Promise<void> {
    this.reading ??= readHeartbeats(this.store, this.opts.log)
      .then((read) => {
        const hbs = this.opts.ages.observe(read);
        this.known = read;
        this.readAt = new Date();
        this.lastError = undefined;
        this.opts.onRead?.(hbs);
      })
      .catch((err: Error) => {
        this.lastError = err.message;
        this.opts.log.warn({ err: err.message }, 'heartbeats not read');
      })
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }

  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * The backup leader's sidecar by the heartbeats: a fresh heartbeat announcing role leader, the one
 * of the current etcd leader first (during a handoff two may briefly claim it).
 */
export function leaderHeartbeat(hbs: readonly SeenHeartbeat[], ttlMs: number, etcdLeaderId?: string, self?: string): SeenHeartbeat | undefined {
  const fresh = hbs.filter((h) => h.role === 'leader' && h.name !== self && h.ageMs <= ttlMs);
  return fresh.find((h) => etcdLeaderId !== undefined && h.memberId === etcdLeaderId) ?? fresh.sort((a, b) => a.ageMs - b.ageMs)[0];
}
