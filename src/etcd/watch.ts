import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { settleWithin } from '../resilience.js';
import { forgetAuthToken } from './client.js';

/** Cancelling waits for etcd's answer on a live stream; a frozen member never answers. */
const CANCEL_WAIT_MS = 2_000;

/** etcd's mvccpb.KeyValue with revisions as numbers and the lease id exact. */
export interface KeyValue {
  key: Buffer;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  /** int64 lease id in decimal ('0' = none): lease ids exceed 2^53, so never a JS number. */
  lease: string;
}

/** One change as etcd's watch reports it. */
export interface WatchedEvent extends KeyValue {
  type: 'put' | 'delete';
}

export type WatchEnd =
  /** The events from the requested revision are gone: etcd compacted them. */
  | { reason: 'compacted'; message: string }
  /** Anything else (member down, stream reset, leader lost, auth): watch again from the next revision. */
  | { reason: 'interrupted'; message: string };

export interface KeyspaceWatchHandlers {
  /** Every event of one watch response, in revision order; `headerRevision` is etcd's revision when it was sent. */
  events(events: WatchedEvent[], headerRevision: number): void;
  /** Called once; the watch is over and must be opened again by the caller. */
  ended(end: WatchEnd): void;
}

function toEvent(type: string, kv: IKeyValue): WatchedEvent {
  return {
    type: type === 'Delete' ? 'delete' : 'put',
    key: kv.key,
    value: kv.value,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: kv.lease,
  };
}

/** Asks the member whether `revision` was compacted (etcd's watch cancel carries no reason for it). */
async function isCompacted(member: Etcd3, revision: number): Promise<boolean> {
  try {
    await member.get('\0').revision(revision).exec();
    return false;
  } catch (err) {
    return /compacted/i.test((err as Error).message);
  }
}

/**
 * A watch of the whole keyspace from a revision, on one member. etcd3's watcher re-attaches by
 * itself after a disconnect, but from the revision in the header of the response that created it,
 * which can be ahead of the events delivered so far: events would be skipped in silence. So any
 * interruption ends this watch, and the caller opens a new one from the revision it needs.
 */
export class KeyspaceWatch {
  private watcher: Watcher | undefined;
  private done = false;
  /** The revision a new watch would have to start from to miss nothing. */
  private next = 0;

  private constructor(
    private readonly member: Etcd3,
    private readonly handlers: KeyspaceWatchHandlers,
  ) {}

  static async open(member: Etcd3, fromRevision: number, handlers: KeyspaceWatchHandlers): Promise<KeyspaceWatch> {
    const w = new KeyspaceWatch(member, handlers);
    await w.start(fromRevision);
    return w;
  }

  private async start(fromRevision: number): Promise<void> {
    this.next = fromRevision;
    // key "\0" with range end "\0": every key.
    const watcher = await this.member
      .watch()
      .inRange({ start: Buffer.from([0]), end: Buffer.from([0]) })
      .startRevision(String(fromRevision))
      .create();
    this.watcher = watcher;
    watcher.on('data', (res: IWatchResponse) => {
      if (this.done || res.events.length === 0) return;
      const events = res.events.map((e) => toEvent(e.type, e.kv));
      this.next = Math.max(this.next, (events[events.length - 1] as WatchedEvent).modRevision + 1);
      this.handlers.events(events, Number(res.header.revision));
    });
    watcher.on('disconnected', (err: Error) => this.end({ reason: 'interrupted', message: `watch stream lost: ${err.message}` }));
    watcher.on('error', (err: Error) => {
      if (this.done) return;
      this.done = true;
      forgetAuthToken(this.member);
      const next = this.next;
      void isCompacted(this.member, next).then((compacted) =>
        this.handlers.ended(compacted ? { reason: 'compacted', message: `revision ${next} was compacted (${err.message})` } : { reason: 'interrupted', message: err.message }),
      );
    });
  }

  private end(end: WatchEnd): void {
    if (this.done) return;
    this.done = true;
    forgetAuthToken(this.member);
    void this.close();
    this.handlers.ended(end);
  }

  /** Stops the watch; no handler is called afterwards. */
  async close(): Promise<void> {
    this.done = true;
    const w = this.watcher;
    this.watcher = undefined;
    if (!w) return;
    w.removeAllListeners('data');
    // Cancelling waits for etcd's answer on a live stream; a dead one is dropped at once.
    await settleWithin(w.cancel(), CANCEL_WAIT_MS);
  }
}
