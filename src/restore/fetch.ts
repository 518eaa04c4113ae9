import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressStream } from '../snapshot/compression.js';
import type { DeltaEvent } from '../snapshot/delta-format.js';
import type { SnapshotRef } from '../snapshot/names.js';
import { SnapshotVerifier } from '../snapshot/verify.js';
import type { SnapStore } from '../snapstore/types.js';
import { DeltaReader, readAllEvents, readFailure as corrupt } from './delta-reader.js';
import { RestoreError } from './plan.js';

export interface FullSnapshotFile {
  /** The revision inside the db, read from it (the name may say less: anchor bug #1044). */
  revision: number;
  dbBytes: number;
  sha256: string;
  /** meta/storageVersion of the db: etcd 3.6 and later write it (gardener's full snapshots record no version otherwise). */
  storageVersion?: string;
}

/**
 * Downloads a full snapshot to `file`, decompressed, checking the store's checksum, etcd's sha256
 * trailer and the db's structure on the way, and learning the revision really inside it.
 */
export async function fetchFullSnapshot(store: SnapStore, ref: SnapshotRef, file: string, signal?: AbortSignal): Promise<FullSnapshotFile> {
  const verifier = new SnapshotVerifier();
  try {
    await pipeline(await store.get(ref.name, signal ? { signal } : {}), decompressStream(ref.compression), verifier, createWriteStream(file), signal ? { signal } : {});
  } catch (err) {
    throw corrupt(ref.name, err);
  }
  const facts = verifier.facts;
  if (!facts) throw new RestoreError('corrupt', `${ref.name} ended before it was verified`);
  if (facts.revision < ref.lastRevision) {
    throw new RestoreError('corrupt', `${ref.name} is named for revision ${ref.lastRevision} but the db inside holds revision ${facts.revision}`);
  }
  return { revision: facts.revision, dbBytes: facts.dbBytes, sha256: facts.sha256, ...(facts.storageVersion !== undefined ? { storageVersion: facts.storageVersion } : {}) };
}

/** The stored bytes of one object, read as the consumer asks for them (the socket waits meanwhile). */
async function* streamed(store: SnapStore, ref: SnapshotRef, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const body = await store.get(ref.name, signal ? { signal } : {});
  try {
    for await (const chunk of body) yield chunk as Buffer;
  } finally {
    body.destroy();
  }
}

/** Reads one whole delta: the store's checksum, decompression and the payload's sha256 trailer are all checked. */
export async function fetchDelta(store: SnapStore, ref: SnapshotRef, signal?: AbortSignal): Promise<DeltaEvent[]> {
  return await readAllEvents(new DeltaReader(ref, streamed(store, ref, signal)));
}

/**
 * A stored object read into memory as fast as the store sends it (a prefetch never leaves a socket
 * idle long enough for the store's timeout), handed out chunk by chunk as the replay gets to it.
 */
class BufferedDownload {
  received = 0;
  private readonly queue: Buffer[] = [];
  private ended = false;
  private failure: { err: unknown } | undefined;
  private wake: (() => void) | undefined;
  private body: Readable | undefined;
  private cancelled = false;

  constructor(open: Promise<Readable>) {
    open.then(
      (body) => {
        if (this.cancelled) {
          body.destroy();
          return;
        }
        this.body = body;
        body.on('data', (c: Buffer) => {
          this.queue.push(c);
          this.received += c.length;
          this.poke();
        });
        body.on('end', () => {
          this.ended = true;
          this.poke();
        });
        body.on('error', (err) => this.fail(err));
      },
      (err: unknown) => this.fail(err),
    );
  }

  async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      const c = this.queue.shift();
      if (c) yield c;
      else if (this.failure) throw this.failure.err;
      else if (this.ended) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  cancel(): void {
    this.cancelled = true;
    this.queue.length = 0;
    this.body?.destroy();
    this.poke();
  }

  private fail(err: unknown): void {
    this.failure ??= { err };
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

export interface PrefetchLimits {
  /** Deltas read ahead of the one being replayed. */
  deltas: number;
  /** Stored bytes those may hold together, the one being replayed included. */
  bytes: number;
}

export const DEFAULT_PREFETCH: PrefetchLimits = { deltas: 4, bytes: 32 * 1024 * 1024 };

/**
 * Reads deltas ahead of the one being replayed, so the replay never waits on the store, with memory
 * bounded by bytes: a delta is read ahead only while the stored bytes held (compressed, as stored;
 * each is decoded only as it is replayed) stay within `bytes`, and only up to `deltas` ahead. A
 * delta larger than `bytes` alone is not read ahead: it streams from the store as it is replayed.
 * Sizes come from the store (`sizes`, by name); a delta of unknown size counts what it has received.
 */
export class DeltaPrefetcher {
  private readonly limits: PrefetchLimits;
  private readonly slots = new Map<number, { download: BufferedDownload; size: number | undefined }>();
  private head = 0;
  private nextToStart = 0;
  private closed = false;

  constructor(
    private readonly store: SnapStore,
    private readonly refs: readonly SnapshotRef[],
    limits: Partial<PrefetchLimits> = {},
    private readonly signal?: AbortSignal,
    private readonly sizes?: ReadonlyMap<string, number>,
  ) {
    this.limits = { deltas: Math.max(0, limits.deltas ?? DEFAULT_PREFETCH.deltas), bytes: Math.max(0, limits.bytes ?? DEFAULT_PREFETCH.bytes) };
  }

  /** Delta `i` as a stream of events; deltas must be opened in order, each closed before the next. */
  open(i: number): DeltaReader {
    const ref = this.refs[i] as SnapshotRef;
    this.head = i;
    for (const j of this.slots.keys()) if (j < i) this.release(j);
    const size = this.sizes?.get(ref.name);
    const slot = this.slots.get(i) ?? (size !== undefined && size > this.limits.bytes ? undefined : this.start(i));
    this.nextToStart = Math.max(this.nextToStart, i + 1);
    const reader = new DeltaReader(ref, slot ? slot.download.chunks() : streamed(this.store, ref, this.signal), () => this.release(i));
    this.fill();
    return reader;
  }

  /** Stops every read ahead. */
  close(): void {
    this.closed = true;
    for (const j of [...this.slots.keys()]) this.release(j);
  }

  private start(i: number): { download: BufferedDownload; size: number | undefined } {
    const ref = this.refs[i] as SnapshotRef;
    const slot = { download: new BufferedDownload(this.store.get(ref.name, this.signal ? { signal: this.signal } : {})), size: this.sizes?.get(ref.name) };
    this.slots.set(i, slot);
    return slot;
  }

  private held(): number {
    let n = 0;
    for (const s of this.slots.values()) n += s.size ?? s.download.received;
    return n;
  }

  /** Starts reads ahead, in order, while the limits allow. */
  private fill(): void {
    while (!this.closed && this.nextToStart < this.refs.length && this.nextToStart <= this.head + this.limits.deltas) {
      const size = this.sizes?.get((this.refs[this.nextToStart] as SnapshotRef).name);
      const held = this.held();
      if (size !== undefined ? held + size > this.limits.bytes : held >= this.limits.bytes) return;
      this.start(this.nextToStart++);
    }
  }

  private release(i: number): void {
    const slot = this.slots.get(i);
    if (!slot) return;
    slot.download.cancel();
    this.slots.delete(i);
    this.fill();
  }
}

/** `cluster-id` metadata and size of each object, read in parallel (a HEAD each). */
export interface ObjectFacts {
  name: string;
  clusterId: string | undefined;
  /** The version of the etcd the object was taken from (`ebs-etcd-version`); gardener's objects record none. */
  etcdVersion: string | undefined;
  /** Stored bytes. */
  size: number;
}

export async function clusterIdsOf(store: SnapStore, refs: readonly SnapshotRef[], concurrency = 16): Promise<ObjectFacts[]> {
  const out = new Array<ObjectFacts>(refs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < refs.length) {
      const i = next++;
      const ref = refs[i] as SnapshotRef;
      let info;
      try {
        info = await store.head(ref.name);
      } catch (err) {
        throw corrupt(ref.name, err);
      }
      if (!info) throw new RestoreError('gap', `${ref.name} is listed but no longer in the store`);
      out[i] = { name: ref.name, clusterId: info.metadata['ebs-cluster-id'], etcdVersion: info.metadata['ebs-etcd-version'], size: info.size };
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, refs.length) }, worker));
  return out;
}
