import type { Chain } from './chain.js';
import type { GcLockView } from './gc-locks.js';
import type { Compression, SnapshotKind } from './names.js';

/** What the sidecar tells about a snapshot it uploaded (API answers, logs, metrics). */
export interface SnapshotRecord {
  name: string;
  kind: SnapshotKind;
  startRevision: number;
  lastRevision: number;
  createdAt: string;
  compression: Compression;
  /** Bytes stored (after compression). */
  size: number;
  /** sha256 of the stored object, hex. */
  sha256: string;
  /** Full: the db's size; delta: the JSON payload's size. */
  uncompressedSize: number;
  /** Delta: number of events. */
  events?: number;
  durationMs: number;
  /** The version of the etcd it was taken from (also on the object, `ebs-etcd-version`); unknown when not read. */
  etcdVersion?: string;
}

/** Object metadata we add (never read by the anchor, which ignores metadata). */
export function objectMetadata(fields: Record<string, string | number | bigint | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '') out[`ebs-${k}`] = String(v);
  return out;
}

/** Receives what the snapshotters did, e.g. to update metrics; kept apart so snapshot/ knows no server. */
export interface SnapshotObserver {
  uploaded(record: SnapshotRecord): void;
  failed(kind: SnapshotKind, err: Error): void;
  /** The store's latest chain, as the backup leader read it (at the start of its term, at each retention run). */
  chainRead?(chain: Chain): void;
  /** A retention run ended: what it deleted and what locks held back. */
  gcRan?(view: GcLockView): void;
}

/** `observer`, and `then` after each upload (e.g. to catch a secondary store up at once). */
export function afterUpload(observer: SnapshotObserver, then: () => void): SnapshotObserver {
  return {
    uploaded: (record) => {
      observer.uploaded(record);
      then();
    },
    failed: (kind, err) => observer.failed(kind, err),
    ...(observer.chainRead ? { chainRead: (chain: Chain) => observer.chainRead?.(chain) } : {}),
    ...(observer.gcRan ? { gcRan: (view: GcLockView) => observer.gcRan?.(view) } : {}),
  };
}
