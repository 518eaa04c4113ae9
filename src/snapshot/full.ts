import { pipeline, type Readable } from 'node:stream';
import { stageObject } from '../snapstore/stage.js';
import type { SnapStore, StageOptions } from '../snapstore/types.js';
import { compressLargeStream } from './compression.js';
import { snapshotName, type Compression } from './names.js';
import { objectMetadata, type SnapshotRecord } from './record.js';
import { SnapshotIntegrityError, SnapshotVerifier } from './verify.js';

export interface FullSnapshotSource {
  /** Opens `Maintenance.Snapshot` on the member whose data is backed up. */
  open(): Promise<Readable>;
  /** Recorded on the object, to tell clusters and members apart when reading a bucket. */
  clusterId?: string;
  member: string;
  /**
   * The version of the etcd the snapshot comes from, read as it starts: a restore runs that
   * release (3.5 cannot open what 3.6 wrote). Undefined when it could not be read.
   */
  etcdVersion?: () => Promise<string | undefined>;
}

export interface FullSnapshotSettings {
  compression: Compression;
  compressionLevel: number;
  spoolDir: string;
  /** --store-retention: the object is locked this long from the snapshot's start; 0: not locked. */
  retentionMs?: number;
}

export interface FullSnapshot extends SnapshotRecord {
  consistentIndex: string;
}

/**
 * One full snapshot: etcd's snapshot stream is verified (sha256 trailer), read for the revision it
 * holds, compressed and staged in a single pass; only when all of that succeeded is the object
 * committed under its name, which carries that exact revision (never a revision asked for before
 * the snapshot began, anchor bug #1044). Any failure leaves nothing under a snapshot name.
 */
export async function takeFullSnapshot(store: SnapStore, source: FullSnapshotSource, settings: FullSnapshotSettings, now: () => Date = () => new Date(), signal?: AbortSignal): Promise<FullSnapshot> {
  const started = now();
  const t0 = performance.now();
  const verifier = new SnapshotVerifier();
  const etcdVersion = await source.etcdVersion?.();
  const raw = await source.open();
  let streamError: Error | undefined;
  const done = (err: Error | null): void => {
    if (err) streamError = err;
  };
  const body = settings.compression === 'none' ? pipeline(raw, verifier, done) : pipeline(raw, verifier, compressLargeStream(settings.compression, settings.compressionLevel), done);
  let staged;
  try {
    const opts: StageOptions & { spoolDir: string } = { spoolDir: settings.spoolDir };
    if (signal) opts.signal = signal;
    if (settings.retentionMs) opts.retainUntil = new Date(started.getTime() + settings.retentionMs);
    // Uncompressed, the stored bytes are the stream the verifier hashed already.
    if (settings.compression === 'none') opts.digest = () => verifier.streamDigest ?? { size: -1, sha256Hex: '' };
    staged = await stageObject(store, body, opts);
  } catch (err) {
    // The verifier's verdict explains a failed upload better than the upload's own error.
    throw streamError instanceof SnapshotIntegrityError ? streamError : err;
  }
  const facts = verifier.facts;
  if (!facts) {
    await staged.discard();
    throw streamError ?? new SnapshotIntegrityError('snapshot stream ended before it was verified');
  }
  const name = snapshotName({ kind: 'full', startRevision: 0, lastRevision: facts.revision, createdAt: started, compression: settings.compression });
  try {
    const put = await staged.commit(
      name,
      objectMetadata({
        kind: 'full',
        revision: facts.revision,
        'consistent-index': facts.consistentIndex,
        'db-size': facts.dbBytes,
        'db-sha256': facts.sha256,
        'cluster-id': source.clusterId,
        member: source.member,
        'etcd-version': etcdVersion,
      }),
    );
    return {
      name,
      kind: 'full',
      startRevision: 0,
      lastRevision: facts.revision,
      createdAt: started.toISOString(),
      compression: settings.compression,
      size: put.size,
      sha256: put.sha256,
      uncompressedSize: facts.dbBytes,
      durationMs: Math.round(performance.now() - t0),
      consistentIndex: facts.consistentIndex.toString(),
      ...(etcdVersion ? { etcdVersion } : {}),
    };
  } catch (err) {
    await staged.discard();
    throw err;
  }
}
