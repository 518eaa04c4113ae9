import type { Readable } from 'node:stream';

/** One stored object, named relative to the store's prefix (e.g. `v2/Full-00000000-00000042-1700000000.gz`). */
export interface ObjectInfo {
  name: string;
  size: number;
  lastModified: Date;
  /** Custom metadata given at put time (never used for secrets); from `head` and `put`, empty in `list`. */
  metadata: Record<string, string>;
  /** Until when the store refuses to delete or overwrite the object (Object Lock, retention); where the store reports it. */
  retainUntil?: Date;
}

/** What a completed put proves: the bytes the store holds are the bytes that were sent. */
export interface PutResult extends ObjectInfo {
  /** sha256 of the bytes sent, hex. */
  sha256: string;
  /** The store's own checksum that was compared with what was sent (e.g. `etag-md5`, `crc32c`, `sha256`). */
  verifiedBy: string;
}

export interface PutOptions {
  metadata?: Record<string, string>;
  /** Aborts the upload; nothing is left under the name. */
  signal?: AbortSignal;
  /** The store refuses to delete or overwrite the object before this (needs `checkRetention`). */
  retainUntil?: Date;
}

export interface StageOptions {
  signal?: AbortSignal;
  /**
   * The size and sha256 of the body, known to the caller once the body has ended because it hashed
   * the same bytes already (a full snapshot's verifier): the store then skips its own hashing pass.
   */
  digest?: () => { size: number; sha256Hex: string };
  /** As `PutOptions.retainUntil`, applied when the staged bytes are committed. */
  retainUntil?: Date;
}

/**
 * Bytes uploaded before their name is known (a full snapshot's name holds its last revision, read
 * at the end of its stream). Nothing is visible under any name until `commit`.
 */
export interface StagedObject {
  readonly size: number;
  /** sha256 of the staged bytes, hex. */
  readonly sha256: string;
  /** Stores the staged bytes under `name`, all-or-nothing like `put`. */
  commit(name: string, metadata?: Record<string, string>): Promise<PutResult>;
  /** Drops the staged bytes. */
  discard(): Promise<void>;
}

/** The most bytes `readVersioned` and `putIfVersion` handle: they hold the whole body in memory. */
export const MAX_VERSIONED_BYTES = 1 << 20;

/**
 * A small object read together with the version it had when read. `version` is opaque: pass it back
 * to `putIfVersion` unchanged. S3: the ETag; GCS: the generation; local: a token drawn at each write.
 */
export interface VersionedObject {
  body: Buffer;
  version: string;
}

export interface VersionedPutOptions {
  signal?: AbortSignal;
  metadata?: Record<string, string>;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Present when more objects follow; pass it back to get the next page. */
  nextPageToken?: string;
}

export interface ListOptions {
  pageToken?: string;
  /** At most this many objects per page (the store may return fewer); default 1000. */
  pageSize?: number;
}

/**
 * Object storage as the snapshotter and the restorer see it. Every provider keeps the same promises:
 * - `put` streams (memory stays bounded whatever the size) and is all-or-nothing: a failed, aborted
 *   or interrupted upload never leaves an object under the name;
 * - the checksum the store reports is compared with what was sent before `put` resolves;
 * - `get` streams and fails (stream error, `StoreError` with code `checksum_mismatch`) when the bytes
 *   read do not match the checksum recorded at put time;
 * - `list` returns names in lexicographic order, page by page.
 */
export interface SnapStore {
  /** The store's URL, safe to show (no credentials). */
  readonly url: string;
  put(name: string, body: Readable, opts?: PutOptions): Promise<PutResult>;
  /** Stores without a name yet, where the store can do so at no extra cost (see `stageObject`). */
  stage?(body: Readable, opts?: StageOptions): Promise<StagedObject>;
  get(name: string, opts?: { signal?: AbortSignal }): Promise<Readable>;
  head(name: string): Promise<ObjectInfo | undefined>;
  /** Names, sizes and times; metadata costs a request per object on S3, so `list` never carries it. */
  list(prefix: string, opts?: ListOptions): Promise<ListPage>;
  /**
   * Removes the object. One under retention is not removed: the call rejects with an
   * `ObjectLockedError` (code `locked`), carrying the date when the store told it.
   */
  delete(name: string): Promise<void>;
  /**
   * Resolves when puts given `retainUntil` will be locked by the store until then (S3: the bucket has
   * Object Lock enabled); rejects with code `config` naming what is missing. A store without this
   * method cannot lock objects.
   */
  checkRetention?(): Promise<void>;
  /**
   * Reads a small object (at most `MAX_VERSIONED_BYTES`, larger fails with code `config`) and its
   * current version in one consistent pair; undefined when the object does not exist.
   */
  readVersioned(name: string, opts?: { signal?: AbortSignal }): Promise<VersionedObject | undefined>;
  /**
   * Compare-and-swap: stores `body` only if the object's current version is `expected` (`undefined`:
   * only if the object does not exist), and resolves to the new version. When another writer came
   * first it rejects with a `StoreError` of code `precondition_failed` (not retryable: read again and
   * decide). Bodies larger than `MAX_VERSIONED_BYTES` are refused with code `config` before any I/O.
   *
   * On S3 the version is the ETag, the md5 of the body: writing the same bytes again gives the same
   * version, so a reader cannot tell A -> B -> A from no change. Bodies that carry a counter or an
   * epoch (as a claim does) never repeat. GCS and the local store give every write a new version.
   *
   * A store that ignores the conditions (old MinIO, some S3 clones) overwrites silently: check it
   * once with `probeConditionalWrites` before relying on this.
   */
  putIfVersion(name: string, body: Buffer, expected: string | undefined, opts?: VersionedPutOptions): Promise<string>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}

export type StoreErrorCode =
  | 'not_found'
  | 'no_such_bucket'
  | 'access_denied'
  | 'bad_credentials'
  | 'invalid_name'
  | 'checksum_mismatch'
  /** A conditional write lost: the object is no longer at the version the writer expected. */
  | 'precondition_failed'
  /** The object is under retention (Object Lock): the store refuses to delete it yet. */
  | 'locked'
  | 'unreachable'
  | 'timeout'
  | 'aborted'
  | 'config'
  | 'failed';

/** A store failure that names the store, the object and the cause; never carries credentials. */
export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    readonly store: string,
    message: string,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(`${store}: ${message}`, options);
    this.name = 'StoreError';
  }
}

/** A delete the store refused because the object is under retention; `retainUntil` when the store said until when. */
export class ObjectLockedError extends StoreError {
  constructor(
    store: string,
    message: string,
    readonly retainUntil?: Date,
    options?: { cause?: unknown },
  ) {
    super('locked', store, message, false, options);
    this.name = 'ObjectLockedError';
  }
}

/** Refuses a body too large for the versioned calls, before any I/O. */
export function checkVersionedSize(store: string, name: string, size: number): void {
  if (size > MAX_VERSIONED_BYTES) {
    throw new StoreError('config', store, `${name}: ${size} bytes, more than the ${MAX_VERSIONED_BYTES} a versioned object may hold`);
  }
}

/** Every object of a prefix, across pages. */
export async function* listAll(store: SnapStore, prefix: string, pageSize?: number): AsyncGenerator<ObjectInfo> {
  let pageToken: string | undefined;
  do {
    const opts: ListOptions = {};
    if (pageToken !== undefined) opts.pageToken = pageToken;
    if (pageSize !== undefined) opts.pageSize = pageSize;
    const page = await store.list(prefix, opts);
    yield* page.objects;
    pageToken = page.nextPageToken;
  } while (pageToken !== undefined);
}
