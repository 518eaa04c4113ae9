import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { decompressStream } from '../snapshot/compression.js';
import { decodeDelta, DeltaFormatError, type DeltaEvent } from '../snapshot/delta-format.js';
import type { SnapshotRef } from '../snapshot/names.js';
import { SnapshotVerifier } from '../snapshot/verify.js';
import { StoreError, type SnapStore } from '../snapstore/types.js';
import { RestoreError } from './plan.js';

function corrupt(name: string, err: unknown): RestoreError {
  if (err instanceof RestoreError) return err;
  if (err instanceof StoreError && err.code === 'aborted') return new RestoreError('aborted', `reading ${name}: aborted`, { cause: err });
  if (err instanceof StoreError && err.code !== 'checksum_mismatch' && err.code !== 'not_found') return new RestoreError('store_failed', `reading ${name}: ${err.message}`, { cause: err });
  if (err instanceof StoreError && err.code === 'not_found') return new RestoreError('gap', `${name} is listed but cannot be read: ${err.message}`, { cause: err });
  if ((err as Error).name === 'AbortError') return new RestoreError('aborted', `reading ${name}: aborted`, { cause: err });
  return new RestoreError('corrupt', `${name} is damaged: ${(err as Error).message}`, { cause: err });
}

export interface FullSnapshotFile {
  /** The revision inside the db, read from it (the name may say less: anchor bug #1044). */
  revision: number;
  dbBytes: number;
  sha256: string;
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
  return { revision: facts.revision, dbBytes: facts.dbBytes, sha256: facts.sha256 };
}

/** Reads one delta: the store's checksum, decompression and the payload's sha256 trailer are all checked. */
export async function fetchDelta(store: SnapStore, ref: SnapshotRef, signal?: AbortSignal): Promise<DeltaEvent[]> {
  const chunks: Buffer[] = [];
  try {
    await pipeline(
      await store.get(ref.name, signal ? { signal } : {}),
      decompressStream(ref.compression),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const c of source) chunks.push(c);
      },
      signal ? { signal } : {},
    );
    return decodeDelta(Buffer.concat(chunks));
  } catch (err) {
    if (err instanceof DeltaFormatError) throw new RestoreError('corrupt', `${ref.name} is damaged: ${err.message}`, { cause: err });
    throw corrupt(ref.name, err);
  }
}

/**
 * Fetches and decodes deltas ahead of the one being applied, at most `ahead` at a time, so the
 * replay never waits on the store while memory stays bounded by `ahead` deltas.
 */
export class DeltaPrefetcher {
  private readonly pending = new Map<number, Promise<DeltaEvent[]>>();
  private nextToStart = 0;

  constructor(
    private readonly store: SnapStore,
    private readonly refs: readonly SnapshotRef[],
    private readonly ahead: number,
    private readonly signal?: AbortSignal,
  ) {}

  /** The events of delta `i`; deltas must be taken in order. */
  async take(i: number): Promise<DeltaEvent[]> {
    this.fill(i);
    const p = this.pending.get(i) as Promise<DeltaEvent[]>;
    this.pending.delete(i);
    const events = await p;
    this.fill(i + 1);
    return events;
  }

  private fill(from: number): void {
    this.nextToStart = Math.max(this.nextToStart, from);
    while (this.nextToStart < this.refs.length && this.nextToStart < from + this.ahead) {
      const ref = this.refs[this.nextToStart] as SnapshotRef;
      const p = fetchDelta(this.store, ref, this.signal);
      // Awaited later by take(); a failure of one fetched ahead must not surface as unhandled.
      p.catch(() => {});
      this.pending.set(this.nextToStart, p);
      this.nextToStart++;
    }
  }

  /** Lets go of deltas fetched ahead that will not be applied. */
  close(): void {
    this.pending.clear();
  }
}

/** `cluster-id` metadata of each object, read in parallel (a HEAD each). */
export async function clusterIdsOf(store: SnapStore, refs: readonly SnapshotRef[], concurrency = 16): Promise<{ name: string; clusterId: string | undefined }[]> {
  const out: { name: string; clusterId: string | undefined }[] = new Array(refs.length);
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
      out[i] = { name: ref.name, clusterId: info.metadata['ebs-cluster-id'] };
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, refs.length) }, worker));
  return out;
}
