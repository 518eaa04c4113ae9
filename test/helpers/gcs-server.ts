/**
 * FakeGcsServer: a small in-process HTTP server speaking the subset of the Google Cloud Storage
 * JSON API that `@google-cloud/storage` v7 uses for plain object storage, so the project's GCS
 * provider can be contract-tested without a real bucket or an emulator (none installs here).
 *
 * Point the client at it with `new Storage({ apiEndpoint: server.url, projectId: 'test' })`.
 * With a custom apiEndpoint the library sends no credentials (unless `useAuthWithCustomEndpoint`
 * is set), both in its own request path and in resumable uploads, so no auth is needed or checked.
 *
 * Object bodies live in files under a mkdtemp directory and are streamed to and from disk, so
 * multi-GiB objects cost no memory; metadata is kept in memory. md5 and crc32c are computed while
 * streaming, exactly as GCS reports them (base64; crc32c of the big-endian uint32).
 *
 * COVERED (URLs as the JSON API and the library use them):
 *  - Buckets: GET /storage/v1/b/:bucket (404 with GCS's JSON error body for unknown buckets),
 *    GET /storage/v1/b (list), POST /storage/v1/b (insert; 409 if it exists),
 *    DELETE /storage/v1/b/:bucket (409 unless empty).
 *  - Uploads to POST /upload/storage/v1/b/:bucket/o:
 *    - uploadType=media (body = data, Content-Type header = contentType, `name` query param);
 *    - uploadType=multipart (multipart/related: JSON metadata part, then the media part);
 *    - uploadType=resumable: session creation (JSON metadata body, X-Upload-Content-Type,
 *      X-Upload-Content-Length) answers 200 with a `Location` session URI; then PUTs to it:
 *      `Content-Range: bytes a-b/*` (intermediate chunk, 308 + `Range: bytes=0-N`),
 *      `bytes a-b/total` (final chunk, 200 + object), `bytes a-*\/*` and `bytes a-*\/total` (one
 *      streaming PUT carrying the rest, finalised when the body ends: what the library sends
 *      without chunkSize), status queries `bytes *\/*` and `bytes *\/total` (308 with the persisted
 *      range, or 200 + object once finished; `*\/total` with everything received finalises), a PUT
 *      with no Content-Range (whole object), and DELETE on the session URI (cancel, 499).
 *      As GCS documents, bytes of a chunk that the server already has are ignored, and the server
 *      may persist fewer bytes than were sent, so clients must trust the 308 Range header. This
 *      server uses that freedom deliberately: a non-final chunk is persisted only up to a multiple
 *      of 256 KiB, and a request that breaks off mid-body keeps its bytes up to the last 256 KiB
 *      boundary. (Its own choices where GCS documents only "a 4xx": a chunk starting beyond the
 *      persisted offset gets 400; requests on a cancelled or failed session get 410. A new request
 *      on a session cuts off one still streaming into it.)
 *    An object becomes visible only when its upload completes; a failed or abandoned upload leaves
 *    nothing visible (an abandoned resumable session stays open, see openUploadSessions()).
 *    Hashes supplied by the client (JSON metadata `md5Hash`/`crc32c`, or an `X-Goog-Hash` header on
 *    the final request) are verified; a mismatch answers 400 and stores nothing.
 *  - Objects: GET /storage/v1/b/:bucket/o/:object (metadata), PATCH (contentType, cacheControl,
 *    contentDisposition, contentEncoding, contentLanguage, custom `metadata` merged with null
 *    deleting a key; bumps metageneration), DELETE (204).
 *  - Download: GET /storage/v1/b/:bucket/o/:object?alt=media (the library's URL) and
 *    GET /download/storage/v1/b/:bucket/o/:object?alt=media (the mediaLink form); single `Range`
 *    (`bytes=a-b`, `bytes=a-`, `bytes=-n`) answers 206 with Content-Range, 416 when unsatisfiable;
 *    headers x-goog-hash (`crc32c=..,md5=..`, of the whole stored object, as GCS does, so
 *    corrupt() is detected by the library's validation), x-goog-stored-content-encoding,
 *    x-goog-stored-content-length, x-goog-generation, x-goog-metageneration, ETag, Last-Modified.
 *    Objects stored with contentEncoding gzip are served as stored to clients that accept gzip
 *    (the library always does) and decompressed otherwise (decompressive transcoding).
 *  - List: GET /storage/v1/b/:bucket/o with prefix, delimiter (+ `prefixes`), startOffset,
 *    endOffset, maxResults (default 1000, capped at 1000, items + prefixes count), pageToken /
 *    nextPageToken (opaque), in lexicographic order of the UTF-8 bytes of names; `items` omitted
 *    when empty, as GCS does.
 *  - Preconditions: ifGenerationMatch (0 = must not exist), ifGenerationNotMatch,
 *    ifMetagenerationMatch, ifMetagenerationNotMatch on uploads (checked when the session is
 *    created and again when it completes), metadata GET, download, PATCH and DELETE; 412 with
 *    reason conditionNotMet (304 for a failed *NotMatch on GET, as GCS does).
 *  - `fields` partial responses (e.g. `items(name,size),nextPageToken`) on JSON responses.
 *  - Object resource: kind, id, selfLink, mediaLink, name, bucket, generation, metageneration,
 *    contentType, storageClass, size (string), md5Hash, crc32c, etag, timeCreated, updated,
 *    timeStorageClassUpdated, metadata and the content* fields when set.
 *  - Object names are percent-encoded path segments (names contain `/`), any UTF-8.
 *  - Errors use GCS's body `{ "error": { "code", "message", "errors": [{ message, domain, reason }] } }`.
 *  - Test hooks: failNext() fault injection, corrupt(), objectBytes(), putObject() seeding,
 *    openUploadSessions(), and a log of every request (`requests`).
 *
 * NOT COVERED (answered 501 with a JSON error where a request would otherwise be misread):
 *  IAM, ACLs and auth of any kind (no token is checked; predefinedAcl/userProject are ignored);
 *  object versioning beyond a generation counter (only the live generation exists; `versions=true`
 *  and reads of older generations get 404/501); soft delete and restore; compose, copy, rewrite,
 *  move; customer-supplied or KMS encryption keys; signed URLs and POST policies; the XML API
 *  (`https://storage.googleapis.com/bucket/object`); batch requests; notifications, channels,
 *  HMAC keys; bucket metadata beyond a fixed resource (no lifecycle, retention, labels, PATCH);
 *  object holds, retention, custom time, object contexts; `matchGlob` and
 *  `includeTrailingDelimiter` listing; multi-range downloads (a multi-range header is ignored and
 *  the whole object served); gzip transcoding on upload (the client gzips, the server stores);
 *  session expiry (resumable sessions never expire); quotas and rate limits (use failNext).
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { flipByteInFile } from './files.js';

/** What failNext() matchers and the request log see of a request. */
export interface FakeGcsRequestInfo {
  method: string;
  /** Raw (still percent-encoded) path, without the query string. */
  path: string;
  query: URLSearchParams;
}

export interface FakeGcsRequestLogEntry {
  method: string;
  path: string;
  /** Raw query string including the leading `?`, or ''. */
  search: string;
  headers: { contentRange?: string; contentType?: string; range?: string; contentLength?: string; authorization?: string };
  /** Response status; 0 if the connection broke before a response was sent. */
  status: number;
  /** Set when failNext() answered this request. */
  injected: boolean;
}

export interface FakeGcsObjectResource {
  kind: 'storage#object';
  id: string;
  selfLink: string;
  mediaLink: string;
  name: string;
  bucket: string;
  generation: string;
  metageneration: string;
  contentType: string;
  storageClass: string;
  size: string;
  md5Hash: string;
  crc32c: string;
  etag: string;
  timeCreated: string;
  updated: string;
  timeStorageClassUpdated: string;
  metadata?: Record<string, string>;
  contentEncoding?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentLanguage?: string;
}

interface StoredObject {
  bucket: string;
  name: string;
  generation: string;
  metageneration: number;
  file: string;
  size: number;
  md5Hash: string;
  crc32c: string;
  contentType: string;
  contentEncoding?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  metadata?: Record<string, string>;
  timeCreated: string;
  updated: string;
}

interface BucketRecord {
  name: string;
  timeCreated: string;
  objects: Map<string, StoredObject>;
  /** Names sorted by UTF-8 bytes; rebuilt lazily after a name is added or removed. */
  sorted: string[] | null;
}

/** The metadata a client may set at upload time. */
interface UploadMetadata {
  name?: string;
  contentType?: string;
  contentEncoding?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  metadata?: Record<string, string>;
  md5Hash?: string;
  crc32c?: string;
}

interface Preconditions {
  ifGenerationMatch?: string;
  ifGenerationNotMatch?: string;
  ifMetagenerationMatch?: string;
  ifMetagenerationNotMatch?: string;
}

interface UploadSession {
  id: string;
  bucket: string;
  name: string;
  meta: UploadMetadata;
  preconditions: Preconditions;
  declaredSize: number | undefined;
  file: string;
  /** Bytes durably accepted: what a status query reports. */
  persisted: number;
  md5: Hash;
  crc: number;
  state: 'open' | 'done' | 'failed' | 'cancelled';
  result?: StoredObject;
  /** The request currently streaming into this session, if any. */
  active: { req: IncomingMessage; done: Promise<void> } | undefined;
}

interface FailRule {
  remaining: number;
  status: number;
  match: ((req: FakeGcsRequestInfo) => boolean) | undefined;
}

/** GCS reports errors as this JSON; thrown inside handlers and turned into a response. */
class GcsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
    readonly extraHeaders: Record<string, string> = {},
  ) {
    super(message);
  }
}

const RESUMABLE_QUANTUM = 256 * 1024;
const MAX_JSON_BODY = 1024 * 1024;
const JSON_CONTENT_TYPE = 'application/json; charset=UTF-8';

// ---------------------------------------------------------------------------------------------
// CRC32C. The library's CRC32C class works byte-at-a-time (~130 MB/s here); this slice-by-8
// table version gives identical results about 3.5x faster, which matters because the server
// shares the event loop with the client under test and benches push 1 GiB through it.
// The test suite cross-checks it against the library's CRC32C.
// ---------------------------------------------------------------------------------------------
const CRC_TABLE = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) {
      const prev = t[(k - 1) * 256 + n] ?? 0;
      t[k * 256 + n] = (prev >>> 8) ^ (t[prev & 0xff] ?? 0);
    }
  }
  return t;
})();

/** Extend a CRC32C (as a signed 32-bit value, 0 for empty input) over `b`. */
export function crc32cUpdate(crc: number, b: Uint8Array): number {
  const t = CRC_TABLE;
  let c = ~crc;
  let i = 0;
  const n = b.length;
  const end8 = n - (n % 8);
  // Indexing typed arrays in range cannot yield undefined; the `as number` casts only silence
  // noUncheckedIndexedAccess in this hot loop, where `?? 0` would cost measurable time.
  for (; i < end8; i += 8) {
    const lo = ((b[i] as number) | ((b[i + 1] as number) << 8) | ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24)) ^ c;
    const hi = (b[i + 4] as number) | ((b[i + 5] as number) << 8) | ((b[i + 6] as number) << 16) | ((b[i + 7] as number) << 24);
    c =
      (t[1792 + (lo & 0xff)] as number) ^
      (t[1536 + ((lo >>> 8) & 0xff)] as number) ^
      (t[1280 + ((lo >>> 16) & 0xff)] as number) ^
      (t[1024 + (lo >>> 24)] as number) ^
      (t[768 + (hi & 0xff)] as number) ^
      (t[512 + ((hi >>> 8) & 0xff)] as number) ^
      (t[256 + ((hi >>> 16) & 0xff)] as number) ^
      (t[hi >>> 24] as number);
  }
  for (; i < n; i++) c = (t[(c ^ (b[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c;
}

/** GCS's crc32c field: base64 of the big-endian 32-bit value. */
export function crc32cBase64(crc: number): string {
  const out = Buffer.alloc(4);
  out.writeInt32BE(crc | 0);
  return out.toString('base64');
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Compare names the way GCS orders them: by their UTF-8 bytes (JS string order differs above U+FFFF). */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function lowerBound(sorted: string[], key: string, strict: boolean): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareNames(sorted[mid] as string, key);
    if (c < 0 || (strict && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new GcsError(400, `Invalid percent-encoding in path segment: ${s}`, 'invalid');
  }
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    total += b.length;
    if (total > MAX_JSON_BODY) throw new GcsError(400, 'Metadata body too large', 'invalid');
    parts.push(b);
  }
  return parseJsonObject(Buffer.concat(parts).toString('utf8'));
}

function parseJsonObject(text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new GcsError(400, 'Parse Error: the metadata is not valid JSON', 'parseError');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new GcsError(400, 'Metadata must be a JSON object', 'invalid');
  }
  return v as Record<string, unknown>;
}

function optString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** GCS stores custom metadata values as strings; nulls mean "absent". */
function normaliseCustomMetadata(v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new GcsError(400, 'Invalid value for metadata', 'invalid');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (val === null || val === undefined) continue;
    out[k] = typeof val === 'string' ? val : JSON.stringify(val);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function uploadMetadataFrom(json: Record<string, unknown>): UploadMetadata {
  const meta: UploadMetadata = {};
  const name = optString(json['name']);
  if (name !== undefined) meta.name = name;
  for (const k of ['contentType', 'contentEncoding', 'cacheControl', 'contentDisposition', 'contentLanguage', 'md5Hash', 'crc32c'] as const) {
    const v = optString(json[k]);
    if (v !== undefined) meta[k] = v;
  }
  const custom = normaliseCustomMetadata(json['metadata']);
  if (custom) meta.metadata = custom;
  return meta;
}

function preconditionsFrom(q: URLSearchParams): Preconditions {
  const p: Preconditions = {};
  for (const k of ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch'] as const) {
    const v = q.get(k);
    if (v !== null) {
      if (!/^\d+$/.test(v)) throw new GcsError(400, `Invalid argument for ${k}: ${v}`, 'invalid');
      p[k] = v;
    }
  }
  return p;
}

/** Throws 412 (or 304 for a failed *NotMatch on a read) when a precondition does not hold. */
function checkPreconditions(existing: StoredObject | undefined, p: Preconditions, isRead: boolean): void {
  const fail = (): never => {
    throw new GcsError(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet');
  };
  const notModified = (): never => {
    throw new GcsError(304, 'Not Modified', 'notModified');
  };
  if (p.ifGenerationMatch !== undefined) {
    if (p.ifGenerationMatch === '0') {
      if (existing) fail();
    } else if (!existing || existing.generation !== p.ifGenerationMatch) {
      fail();
    }
  }
  if (p.ifGenerationNotMatch !== undefined) {
    const live = existing?.generation ?? '0';
    if (p.ifGenerationNotMatch === '0' ? !existing : live === p.ifGenerationNotMatch) {
      if (isRead) notModified();
      fail();
    }
  }
  if (p.ifMetagenerationMatch !== undefined) {
    if (!existing || String(existing.metageneration) !== p.ifMetagenerationMatch) fail();
  }
  if (p.ifMetagenerationNotMatch !== undefined) {
    if (existing && String(existing.metageneration) === p.ifMetagenerationNotMatch) {
      if (isRead) notModified();
      fail();
    }
  }
}

function reasonFor(status: number): string {
  switch (status) {
    case 400:
      return 'invalid';
    case 401:
      return 'required';
    case 403:
      return 'forbidden';
    case 404:
      return 'notFound';
    case 408:
      return 'requestTimeout';
    case 409:
      return 'conflict';
    case 410:
      return 'gone';
    case 412:
      return 'conditionNotMet';
    case 429:
      return 'rateLimitExceeded';
    case 500:
      return 'internalError';
    case 502:
      return 'badGateway';
    case 503:
      return 'backendError';
    case 504:
      return 'gatewayTimeout';
    default:
      return 'unknown';
  }
}

function messageFor(status: number): string {
  switch (status) {
    case 429:
      return 'The project exceeded the rate limit for CloudStorage and this operation.';
    case 500:
      return 'Internal Error';
    case 503:
      return 'We encountered an internal error. Please try again.';
    case 504:
      return 'Gateway Timeout';
    default:
      return `Injected failure with status ${status}`;
  }
}

// --- `fields` partial-response selector: a tiny parser for `a,b(c,d),e/f` ---------------------
type FieldTree = Map<string, FieldTree | true>;

function parseFields(spec: string): FieldTree {
  let i = 0;
  const parseList = (): FieldTree => {
    const tree: FieldTree = new Map();
    for (;;) {
      let name = '';
      while (i < spec.length && !',()'.includes(spec[i] as string)) name += spec[i++];
      name = name.trim();
      if (name === '') throw new GcsError(400, `Invalid field selection ${spec}`, 'invalidParameter');
      let sub: FieldTree | true = true;
      if (spec[i] === '(') {
        i++;
        sub = parseList();
        if (spec[i] !== ')') throw new GcsError(400, `Invalid field selection ${spec}`, 'invalidParameter');
        i++;
      }
      // `a/b/c` is shorthand for `a(b(c))`.
      const path = name.split('/');
      let node = tree;
      for (let k = 0; k < path.length - 1; k++) {
        const key = path[k] as string;
        const existing = node.get(key);
        const next: FieldTree = existing instanceof Map ? existing : new Map();
        node.set(key, next);
        node = next;
      }
      const last = path[path.length - 1] as string;
      const prev = node.get(last);
      node.set(last, prev instanceof Map && sub instanceof Map ? new Map([...prev, ...sub]) : sub);
      if (spec[i] === ',') {
        i++;
        continue;
      }
      return tree;
    }
  };
  const tree = parseList();
  if (i !== spec.length) throw new GcsError(400, `Invalid field selection ${spec}`, 'invalidParameter');
  return tree;
}

function applyFields(value: unknown, tree: FieldTree): unknown {
  if (Array.isArray(value)) return value.map((v) => applyFields(v, tree));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, sub] of tree) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    out[k] = sub === true ? v : applyFields(v, sub);
  }
  return out;
}

/** Streaming parser of the multipart/related body the JSON API's multipart upload uses. */
class MultipartRelatedScanner {
  private buf: Buffer = Buffer.alloc(0);
  private state: 'preamble' | 'partHeaders' | 'metaBody' | 'media' | 'epilogue' = 'preamble';
  private partIndex = 0;
  private readonly dashBoundary: Buffer;
  private readonly delimiter: Buffer;
  metadataJson: string | undefined;
  mediaContentType: string | undefined;

  constructor(boundary: string) {
    this.dashBoundary = Buffer.from(`--${boundary}`);
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  /** Feed body bytes; returns the media bytes they complete (slices valid until the next call). */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      switch (this.state) {
        case 'preamble': {
          const i = this.buf.indexOf(this.dashBoundary);
          const after = i + this.dashBoundary.length;
          if (i < 0 || this.buf.length < after + 2) {
            this.guard();
            return out;
          }
          if (this.buf.toString('latin1', after, after + 2) !== '\r\n') throw this.bad('malformed first boundary');
          this.buf = this.buf.subarray(after + 2);
          this.state = 'partHeaders';
          continue;
        }
        case 'partHeaders': {
          let headerText: string;
          if (this.buf.toString('latin1', 0, 2) === '\r\n') {
            headerText = '';
            this.buf = this.buf.subarray(2);
          } else {
            const i = this.buf.indexOf('\r\n\r\n');
            if (i < 0) {
              this.guard();
              return out;
            }
            headerText = this.buf.toString('latin1', 0, i);
            this.buf = this.buf.subarray(i + 4);
          }
          const ct = /^content-type:\s*(.+)$/im.exec(headerText)?.[1]?.trim();
          if (/^content-transfer-encoding:\s*base64/im.test(headerText)) {
            throw new GcsError(501, 'FakeGcsServer does not decode base64 multipart parts', 'notImplemented');
          }
          if (this.partIndex === 0) {
            this.state = 'metaBody';
          } else {
            this.mediaContentType = ct;
            this.state = 'media';
          }
          this.partIndex++;
          continue;
        }
        case 'metaBody': {
          const i = this.buf.indexOf(this.delimiter);
          const after = i + this.delimiter.length;
          if (i < 0 || this.buf.length < after + 2) {
            this.guard();
            return out;
          }
          this.metadataJson = this.buf.toString('utf8', 0, i);
          const tail = this.buf.toString('latin1', after, after + 2);
          if (tail !== '\r\n') throw this.bad('a multipart upload needs a metadata part and a media part');
          this.buf = this.buf.subarray(after + 2);
          this.state = 'partHeaders';
          continue;
        }
        case 'media': {
          const i = this.buf.indexOf(this.delimiter);
          if (i < 0) {
            // Keep a tail that could be the start of the delimiter.
            const keep = Math.min(this.buf.length, this.delimiter.length - 1);
            const emit = this.buf.length - keep;
            if (emit > 0) out.push(this.buf.subarray(0, emit));
            this.buf = this.buf.subarray(emit);
            return out;
          }
          const after = i + this.delimiter.length;
          if (i > 0) out.push(this.buf.subarray(0, i));
          if (this.buf.length < after + 2) {
            this.buf = this.buf.subarray(i);
            return out;
          }
          if (this.buf.toString('latin1', after, after + 2) !== '--') throw this.bad('too many parts in a multipart upload');
          this.buf = Buffer.alloc(0);
          this.state = 'epilogue';
          return out;
        }
        case 'epilogue':
          this.buf = Buffer.alloc(0);
          return out;
      }
    }
  }

  finish(): void {
    if (this.state !== 'epilogue') throw this.bad('multipart body ended before its closing boundary');
  }

  private guard(): void {
    if (this.buf.length > MAX_JSON_BODY) throw this.bad('multipart headers or metadata part too large');
  }

  private bad(why: string): GcsError {
    return new GcsError(400, `Invalid multipart request: ${why}`, 'invalid');
  }
}

/** Appends bytes at an explicit position in a file while hashing exactly what was written. */
class HashingFileWriter {
  private constructor(
    private readonly fh: FileHandle,
    public position: number,
    public md5: Hash,
    public crc: number,
  ) {}

  static async open(path: string, position: number, md5: Hash, crc: number): Promise<HashingFileWriter> {
    const fh = await open(path, position === 0 ? 'w' : 'r+');
    if (position > 0) await fh.truncate(position);
    return new HashingFileWriter(fh, position, md5, crc);
  }

  async write(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.position + off);
      off += bytesWritten;
    }
    this.position += buf.length;
    this.md5.update(buf);
    this.crc = crc32cUpdate(this.crc, buf);
  }

  async truncate(len: number): Promise<void> {
    await this.fh.truncate(len);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

function parseHashHeader(h: string | undefined): { md5?: string; crc32c?: string } {
  const out: { md5?: string; crc32c?: string } = {};
  if (!h) return out;
  for (const part of h.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim().toLowerCase();
    const v = part.slice(eq + 1).trim();
    if (k === 'md5') out.md5 = v;
    if (k === 'crc32c') out.crc32c = v;
  }
  return out;
}

function verifyClientHashes(computed: { md5Hash: string; crc32c: string }, meta: UploadMetadata, header: string | undefined): void {
  const fromHeader = parseHashHeader(header);
  const wantCrc = fromHeader.crc32c ?? meta.crc32c;
  const wantMd5 = fromHeader.md5 ?? meta.md5Hash;
  if (wantCrc !== undefined && wantCrc !== computed.crc32c) {
    throw new GcsError(400, `Provided CRC32C "${wantCrc}" doesn't match calculated CRC32C "${computed.crc32c}".`, 'invalid');
  }
  if (wantMd5 !== undefined && wantMd5 !== computed.md5Hash) {
    throw new GcsError(400, `Provided MD5 hash "${wantMd5}" doesn't match calculated MD5 hash "${computed.md5Hash}".`, 'invalid');
  }
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Read the rest of a request we are not going to use, so keep-alive connections stay usable. */
function drain(req: IncomingMessage): void {
  req.on('error', () => {});
  req.resume();
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/** Data dirs of servers not yet stopped: removed at exit too, so a crashed test leaves no GiB behind. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function trackDir(dir: string): void {
  liveDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

export class FakeGcsServer {
  readonly url: string;
  /** Every request received, in arrival order (status filled in when the response is sent). */
  readonly requests: FakeGcsRequestLogEntry[] = [];

  private readonly buckets = new Map<string, BucketRecord>();
  private readonly sessions = new Map<string, UploadSession>();
  private failRules: FailRule[] = [];
  private lastGeneration = 0;
  private stopped = false;

  private constructor(
    private readonly server: Server,
    private readonly dir: string,
    port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(opts: { buckets?: string[] } = {}): Promise<FakeGcsServer> {
    const dir = await mkdtemp(join(tmpdir(), 'fake-gcs-'));
    trackDir(dir);
    // requestTimeout 0: a multi-GiB streaming PUT may legitimately take longer than Node's 300 s default.
    const server = createServer({ requestTimeout: 0 });
    let self: FakeGcsServer | undefined;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (self) self.handle(req, res);
      else res.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    self = new FakeGcsServer(server, dir, port);
    for (const b of opts.buckets ?? []) self.createBucket(b);
    return self;
  }

  createBucket(name: string): void {
    if (this.buckets.has(name)) return;
    this.buckets.set(name, { name, timeCreated: new Date().toISOString(), objects: new Map(), sorted: null });
  }

  /**
   * Fault injection: the next `count` requests (only those `match` accepts, if given) answer
   * `status` with a GCS-style JSON error at once; their bodies are read and discarded, so an
   * injected failure on a resumable PUT persists none of its bytes.
   */
  failNext(count: number, status: number, match?: (req: FakeGcsRequestInfo) => boolean): void {
    if (count > 0) this.failRules.push({ remaining: count, status, match });
  }

  objectBytes(bucket: string, name: string): Buffer | undefined {
    const o = this.buckets.get(bucket)?.objects.get(name);
    return o ? readFileSync(o.file) : undefined;
  }

  corrupt(bucket: string, name: string): void {
    const o = this.buckets.get(bucket)?.objects.get(name);
    if (!o) throw new Error(`corrupt: no object ${bucket}/${name}`);
    if (o.size === 0) throw new Error(`corrupt: ${bucket}/${name} is empty, there is no byte to flip`);
    // Flip one byte in the middle, keeping the size: the recorded md5/crc32c no longer match.
    // Done in place so corrupting a 1 GiB object does not read it into memory.
    flipByteInFile(o.file, Math.floor(o.size / 2));
  }

  openUploadSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.state === 'open') n++;
    return n;
  }

  /** Seed an object directly (no HTTP), e.g. to prepare 1,000 listing entries quickly. */
  putObject(bucket: string, name: string, data: Buffer | string, meta: { contentType?: string; metadata?: Record<string, string> } = {}): FakeGcsObjectResource {
    const b = this.bucketOr404(bucket);
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const file = join(this.dir, `obj-${randomUUID()}`);
    writeFileSync(file, bytes);
    const uploadMeta: UploadMetadata = { contentType: meta.contentType ?? 'application/octet-stream' };
    if (meta.metadata) uploadMeta.metadata = { ...meta.metadata };
    const obj = this.commitObject(b, name, file, bytes.length, {
      md5Hash: createHash('md5').update(bytes).digest('base64'),
      crc32c: crc32cBase64(crc32cUpdate(0, bytes)),
    }, uploadMeta, {});
    return this.resource(obj);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await rm(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  // --- dispatch ---------------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const entry: FakeGcsRequestLogEntry = {
      method,
      path: u.pathname,
      search: u.search,
      headers: {},
      status: 0,
      injected: false,
    };
    const h = entry.headers;
    const cr = firstHeader(req.headers['content-range']);
    if (cr !== undefined) h.contentRange = cr;
    const ct = firstHeader(req.headers['content-type']);
    if (ct !== undefined) h.contentType = ct;
    const rg = firstHeader(req.headers['range']);
    if (rg !== undefined) h.range = rg;
    const cl = firstHeader(req.headers['content-length']);
    if (cl !== undefined) h.contentLength = cl;
    const auth = firstHeader(req.headers['authorization']);
    if (auth !== undefined) h.authorization = auth;
    this.requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });

    const info: FakeGcsRequestInfo = { method, path: u.pathname, query: u.searchParams };
    const rule = this.failRules.find((r) => !r.match || r.match(info));
    if (rule) {
      rule.remaining--;
      if (rule.remaining <= 0) this.failRules = this.failRules.filter((r) => r !== rule);
      entry.injected = true;
      drain(req);
      this.sendError(res, new GcsError(rule.status, messageFor(rule.status), reasonFor(rule.status)));
      return;
    }

    this.route(req, res, method, u).catch((err: unknown) => {
      drain(req);
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      if (err instanceof GcsError) {
        this.sendError(res, err);
      } else if (this.stopped) {
        res.destroy();
      } else {
        this.sendError(res, new GcsError(500, `FakeGcsServer internal error: ${String(err)}`, 'internalError'));
      }
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse, method: string, u: URL): Promise<void> {
    const q = u.searchParams;
    if (req.headers['x-goog-encryption-key'] !== undefined || q.has('kmsKeyName')) {
      throw new GcsError(501, 'FakeGcsServer does not implement customer-supplied or KMS encryption keys', 'notImplemented');
    }
    const segs = u.pathname.split('/').slice(1);
    const [root, second, version] = segs;

    // /storage/v1/b[/...] and /download/storage/v1/b/... and /upload/storage/v1/b/...
    if (root === 'storage' && second === 'v1' && segs[2] === 'b') return this.routeJson(req, res, method, segs.slice(3), q);
    if ((root === 'upload' || root === 'download') && second === 'storage' && version === 'v1' && segs[3] === 'b') {
      const rest = segs.slice(4);
      if (root === 'download') {
        const [bucket, o, ...nameParts] = rest;
        if (method === 'GET' && bucket !== undefined && o === 'o' && nameParts.length > 0) {
          return this.download(req, res, decodeSegment(bucket), decodeSegment(nameParts.join('/')), q);
        }
      } else if (rest.length === 2 && rest[1] === 'o' && rest[0] !== undefined) {
        const bucket = decodeSegment(rest[0]);
        if (method === 'POST') return this.startUpload(req, res, bucket, q);
        if (method === 'PUT' && q.has('upload_id')) return this.sessionPut(req, res, q);
        if (method === 'DELETE' && q.has('upload_id')) return this.sessionCancel(req, res, q);
      }
    }
    drain(req);
    throw new GcsError(501, `FakeGcsServer does not implement ${method} ${u.pathname}`, 'notImplemented');
  }

  private async routeJson(req: IncomingMessage, res: ServerResponse, method: string, segs: string[], q: URLSearchParams): Promise<void> {
    // segs: [] | [bucket] | [bucket, 'o'] | [bucket, 'o', ...nameSegments]
    if (segs.length === 0 || (segs.length === 1 && segs[0] === '')) {
      if (method === 'GET') return this.sendJson(res, 200, { kind: 'storage#buckets', items: [...this.buckets.values()].map((b) => this.bucketResource(b)) }, q);
      if (method === 'POST') {
        const body = await readJsonBody(req);
        const name = optString(body['name']);
        if (!name) throw new GcsError(400, 'Required: bucket name', 'required');
        if (this.buckets.has(name)) throw new GcsError(409, 'Your previous request to create the named bucket succeeded and you already own it.', 'conflict');
        this.createBucket(name);
        return this.sendJson(res, 200, this.bucketResource(this.bucketOr404(name)), q);
      }
    }
    const bucketName = decodeSegment(segs[0] ?? '');
    if (segs.length === 1) {
      drain(req);
      const b = this.bucketOr404(bucketName);
      if (method === 'GET') return this.sendJson(res, 200, this.bucketResource(b), q);
      if (method === 'DELETE') {
        if (b.objects.size > 0) throw new GcsError(409, 'The bucket you tried to delete is not empty.', 'conflict');
        this.buckets.delete(bucketName);
        res.writeHead(204).end();
        return;
      }
    } else if (segs[1] === 'o' && segs.length === 2) {
      drain(req);
      if (method === 'GET') return this.list(res, bucketName, q);
      if (method === 'POST') throw new GcsError(501, 'Object insert must go to /upload/storage/v1/b/:bucket/o', 'notImplemented');
    } else if (segs[1] === 'o' && segs.length > 2) {
      const name = decodeSegment(segs.slice(2).join('/'));
      if (method === 'GET') {
        drain(req);
        if (q.get('alt') === 'media') return this.download(req, res, bucketName, name, q);
        const o = this.objectOr404(bucketName, name, q);
        checkPreconditions(o, preconditionsFrom(q), true);
        return this.sendJson(res, 200, this.resource(o), q);
      }
      if (method === 'DELETE') {
        drain(req);
        const o = this.objectOr404(bucketName, name, q);
        checkPreconditions(o, preconditionsFrom(q), false);
        this.removeObject(this.bucketOr404(bucketName), name);
        res.writeHead(204).end();
        return;
      }
      if (method === 'PATCH') {
        const body = await readJsonBody(req);
        return this.patch(res, bucketName, name, body, q);
      }
    }
    drain(req);
    throw new GcsError(501, `FakeGcsServer does not implement ${method} /storage/v1/b/${segs.join('/')}`, 'notImplemented');
  }

  // --- buckets and objects ------------------------------------------------------------------

  private bucketOr404(name: string): BucketRecord {
    const b = this.buckets.get(name);
    if (!b) throw new GcsError(404, 'The specified bucket does not exist.', 'notFound');
    return b;
  }

  private objectOr404(bucket: string, name: string, q: URLSearchParams): StoredObject {
    const o = this.bucketOr404(bucket).objects.get(name);
    const gen = q.get('generation');
    if (!o || (gen !== null && gen !== o.generation)) {
      throw new GcsError(404, `No such object: ${bucket}/${name}`, 'notFound');
    }
    return o;
  }

  private nextGeneration(): string {
    // GCS generations are microsecond timestamps; keep them strictly increasing.
    this.lastGeneration = Math.max(Date.now() * 1000, this.lastGeneration + 1);
    return String(this.lastGeneration);
  }

  /** Make an upload visible. Synchronous so the precondition check and the swap are atomic. */
  private commitObject(
    b: BucketRecord,
    name: string,
    file: string,
    size: number,
    hashes: { md5Hash: string; crc32c: string },
    meta: UploadMetadata,
    pre: Preconditions,
  ): StoredObject {
    if (this.buckets.get(b.name) !== b) throw new GcsError(404, 'The specified bucket does not exist.', 'notFound');
    const existing = b.objects.get(name);
    checkPreconditions(existing, pre, false);
    const now = new Date().toISOString();
    const obj: StoredObject = {
      bucket: b.name,
      name,
      generation: this.nextGeneration(),
      metageneration: 1,
      file,
      size,
      md5Hash: hashes.md5Hash,
      crc32c: hashes.crc32c,
      contentType: meta.contentType ?? 'application/octet-stream',
      timeCreated: now,
      updated: now,
    };
    if (meta.contentEncoding !== undefined) obj.contentEncoding = meta.contentEncoding;
    if (meta.cacheControl !== undefined) obj.cacheControl = meta.cacheControl;
    if (meta.contentDisposition !== undefined) obj.contentDisposition = meta.contentDisposition;
    if (meta.contentLanguage !== undefined) obj.contentLanguage = meta.contentLanguage;
    if (meta.metadata !== undefined) obj.metadata = { ...meta.metadata };
    b.objects.set(name, obj);
    if (!existing) b.sorted = null;
    else unlink(existing.file).catch(() => {});
    return obj;
  }

  private removeObject(b: BucketRecord, name: string): void {
    const o = b.objects.get(name);
    if (!o) return;
    b.objects.delete(name);
    b.sorted = null;
    unlink(o.file).catch(() => {});
  }

  private patch(res: ServerResponse, bucket: string, name: string, body: Record<string, unknown>, q: URLSearchParams): void {
    const o = this.objectOr404(bucket, name, q);
    checkPreconditions(o, preconditionsFrom(q), false);
    for (const k of ['contentType', 'contentEncoding', 'cacheControl', 'contentDisposition', 'contentLanguage'] as const) {
      if (!(k in body)) continue;
      const v = body[k];
      if (v === null) {
        if (k === 'contentType') o.contentType = 'application/octet-stream';
        else delete o[k];
      } else if (typeof v === 'string') {
        o[k] = v;
      }
    }
    if ('metadata' in body) {
      const m = body['metadata'];
      if (m === null) {
        delete o.metadata;
      } else if (typeof m === 'object' && !Array.isArray(m)) {
        const merged: Record<string, string> = { ...(o.metadata ?? {}) };
        for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
          if (v === null) delete merged[k];
          else merged[k] = typeof v === 'string' ? v : JSON.stringify(v);
        }
        if (Object.keys(merged).length > 0) o.metadata = merged;
        else delete o.metadata;
      } else {
        throw new GcsError(400, 'Invalid value for metadata', 'invalid');
      }
    }
    o.metageneration++;
    o.updated = new Date().toISOString();
    this.sendJson(res, 200, this.resource(o), q);
  }

  private list(res: ServerResponse, bucket: string, q: URLSearchParams): void {
    const b = this.bucketOr404(bucket);
    if (q.get('versions') === 'true') throw new GcsError(501, 'FakeGcsServer keeps no object versions (versions=true)', 'notImplemented');
    if (q.has('matchGlob')) throw new GcsError(501, 'FakeGcsServer does not implement matchGlob', 'notImplemented');
    if (q.get('includeTrailingDelimiter') === 'true') throw new GcsError(501, 'FakeGcsServer does not implement includeTrailingDelimiter', 'notImplemented');
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const startOffset = q.get('startOffset') ?? '';
    const endOffset = q.get('endOffset');
    let maxResults = 1000;
    const mr = q.get('maxResults');
    if (mr !== null) {
      if (!/^\d+$/.test(mr) || Number(mr) === 0) throw new GcsError(400, `Invalid value for maxResults: ${mr}`, 'invalid');
      maxResults = Math.min(1000, Number(mr));
    }
    let after: string | undefined;
    let skipPrefix: string | undefined;
    const token = q.get('pageToken');
    if (token) {
      try {
        const t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { a?: unknown; p?: unknown };
        if (typeof t.a !== 'string') throw new Error('bad');
        after = t.a;
        if (typeof t.p === 'string') skipPrefix = t.p;
      } catch {
        throw new GcsError(400, 'Invalid page token', 'invalid');
      }
    }

    if (!b.sorted) b.sorted = [...b.objects.keys()].sort(compareNames);
    const sorted = b.sorted;
    let idx = lowerBound(sorted, compareNames(prefix, startOffset) > 0 ? prefix : startOffset, false);
    if (after !== undefined) idx = Math.max(idx, lowerBound(sorted, after, true));

    const items: FakeGcsObjectResource[] = [];
    const prefixes: string[] = [];
    let last: { a: string; p?: string } | undefined;
    let more = false;
    for (; idx < sorted.length; idx++) {
      const name = sorted[idx] as string;
      if (!name.startsWith(prefix)) {
        if (compareNames(name, prefix) > 0) break;
        continue;
      }
      if (endOffset !== null && endOffset !== '' && compareNames(name, endOffset) >= 0) break;
      if (skipPrefix !== undefined && name.startsWith(skipPrefix)) continue;
      let group: string | undefined;
      if (delimiter !== '') {
        const d = name.indexOf(delimiter, prefix.length);
        if (d >= 0) group = name.slice(0, d + delimiter.length);
      }
      if (group !== undefined && group === last?.p) continue;
      if (items.length + prefixes.length >= maxResults) {
        more = true;
        break;
      }
      if (group !== undefined) {
        prefixes.push(group);
        last = { a: name, p: group };
      } else {
        items.push(this.resource(b.objects.get(name) as StoredObject));
        last = { a: name };
      }
    }
    const body: Record<string, unknown> = { kind: 'storage#objects' };
    if (more && last) body['nextPageToken'] = Buffer.from(JSON.stringify(last)).toString('base64url');
    if (prefixes.length > 0) body['prefixes'] = prefixes;
    if (items.length > 0) body['items'] = items;
    this.sendJson(res, 200, body, q);
  }

  // --- download -----------------------------------------------------------------------------

  private async download(req: IncomingMessage, res: ServerResponse, bucket: string, name: string, q: URLSearchParams): Promise<void> {
    const o = this.objectOr404(bucket, name, q);
    checkPreconditions(o, preconditionsFrom(q), true);
    // Open before answering so a concurrent overwrite (which unlinks the old file) cannot break it;
    // losing that race just means the object was replaced or deleted a moment earlier.
    const fh = await open(o.file, 'r').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GcsError(404, `No such object: ${bucket}/${name}`, 'notFound');
      throw err;
    });
    try {
      const storedEncoding = o.contentEncoding ?? 'identity';
      const acceptsGzip = /\bgzip\b/i.test(firstHeader(req.headers['accept-encoding']) ?? '');
      const transcode = storedEncoding === 'gzip' && !acceptsGzip;
      const headers: Record<string, string> = {
        'Content-Type': o.contentType,
        'x-goog-generation': o.generation,
        'x-goog-metageneration': String(o.metageneration),
        'x-goog-stored-content-encoding': storedEncoding,
        'x-goog-stored-content-length': String(o.size),
        'x-goog-storage-class': 'STANDARD',
        ETag: this.etag(o),
        'Last-Modified': new Date(o.updated).toUTCString(),
        'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate',
        'Accept-Ranges': 'bytes',
      };
      if (!transcode) headers['x-goog-hash'] = `crc32c=${o.crc32c},md5=${o.md5Hash}`;
      if (o.contentDisposition) headers['Content-Disposition'] = o.contentDisposition;
      if (o.contentLanguage) headers['Content-Language'] = o.contentLanguage;
      if (storedEncoding !== 'identity' && !transcode) headers['Content-Encoding'] = storedEncoding;

      if (transcode) {
        res.writeHead(200, headers);
        await pipeline(fh.createReadStream({ autoClose: false }), createGunzip(), res);
        return;
      }

      let start = 0;
      let end = o.size - 1;
      let status = 200;
      const range = firstHeader(req.headers['range']);
      const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
      if (m && o.size > 0 && (m[1] !== '' || m[2] !== '')) {
        if (m[1] === '') {
          start = Math.max(0, o.size - Number(m[2]));
        } else {
          start = Number(m[1]);
          if (m[2] !== '') end = Math.min(end, Number(m[2]));
        }
        if (start >= o.size || start > end) {
          throw new GcsError(416, 'The requested range cannot be satisfied.', 'requestedRangeNotSatisfiable', {
            'Content-Range': `bytes */${o.size}`,
          });
        }
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${o.size}`;
      }
      const length = o.size === 0 ? 0 : end - start + 1;
      headers['Content-Length'] = String(length);
      res.writeHead(status, headers);
      if (length === 0) {
        res.end();
        return;
      }
      await pipeline(fh.createReadStream({ start, end, autoClose: false }), res);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  // --- uploads ------------------------------------------------------------------------------

  private async startUpload(req: IncomingMessage, res: ServerResponse, bucket: string, q: URLSearchParams): Promise<void> {
    const uploadType = q.get('uploadType');
    if (uploadType === 'resumable') return this.createSession(req, res, bucket, q);
    if (uploadType !== 'media' && uploadType !== 'multipart') {
      throw new GcsError(400, `Invalid upload type: ${uploadType ?? '(none)'}`, 'invalid');
    }
    const b = this.bucketOr404(bucket);
    const pre = preconditionsFrom(q);
    // Fail fast like GCS when the precondition already fails; it is checked again at commit.
    checkPreconditions(b.objects.get(q.get('name') ?? ''), pre, false);

    const file = join(this.dir, `obj-${randomUUID()}`);
    const writer = await HashingFileWriter.open(file, 0, createHash('md5'), 0);
    let meta: UploadMetadata;
    try {
      if (uploadType === 'media') {
        for await (const chunk of req) await writer.write(chunk as Buffer);
        meta = {};
        const ct = firstHeader(req.headers['content-type']);
        if (ct) meta.contentType = ct;
      } else {
        const ctHeader = firstHeader(req.headers['content-type']) ?? '';
        const bm = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(ctHeader);
        const boundary = bm?.[1] ?? bm?.[2];
        if (!/^multipart\/related/i.test(ctHeader) || !boundary) {
          throw new GcsError(400, 'Multipart upload needs Content-Type multipart/related with a boundary', 'invalid');
        }
        const scanner = new MultipartRelatedScanner(boundary);
        for await (const chunk of req) {
          for (const piece of scanner.push(chunk as Buffer)) await writer.write(piece);
        }
        scanner.finish();
        meta = uploadMetadataFrom(parseJsonObject(scanner.metadataJson ?? ''));
        if (meta.contentType === undefined && scanner.mediaContentType) meta.contentType = scanner.mediaContentType;
      }
      const name = q.get('name') ?? meta.name;
      if (!name) throw new GcsError(400, 'Required: object name', 'required');
      const hashes = { md5Hash: writer.md5.digest('base64'), crc32c: crc32cBase64(writer.crc) };
      verifyClientHashes(hashes, meta, firstHeader(req.headers['x-goog-hash']));
      await writer.close();
      const obj = this.commitObject(b, name, file, writer.position, hashes, meta, pre);
      this.sendJson(res, 200, this.resource(obj), q);
    } catch (err) {
      await writer.close().catch(() => {});
      await unlink(file).catch(() => {});
      throw err;
    }
  }

  private async createSession(req: IncomingMessage, res: ServerResponse, bucket: string, q: URLSearchParams): Promise<void> {
    const body = await readJsonBody(req);
    const b = this.bucketOr404(bucket);
    const meta = uploadMetadataFrom(body);
    const name = q.get('name') ?? meta.name;
    if (!name) throw new GcsError(400, 'Required: object name', 'required');
    const xct = firstHeader(req.headers['x-upload-content-type']);
    if (meta.contentType === undefined && xct) meta.contentType = xct;
    const xcl = firstHeader(req.headers['x-upload-content-length']);
    let declaredSize: number | undefined;
    if (xcl !== undefined) {
      if (!/^\d+$/.test(xcl)) throw new GcsError(400, `Invalid X-Upload-Content-Length: ${xcl}`, 'invalid');
      declaredSize = Number(xcl);
    }
    const pre = preconditionsFrom(q);
    checkPreconditions(b.objects.get(name), pre, false);
    const id = randomUUID().replace(/-/g, '');
    const session: UploadSession = {
      id,
      bucket,
      name,
      meta,
      preconditions: pre,
      declaredSize,
      file: join(this.dir, `upload-${id}`),
      persisted: 0,
      md5: createHash('md5'),
      crc: 0,
      state: 'open',
      active: undefined,
    };
    writeFileSync(session.file, Buffer.alloc(0));
    this.sessions.set(id, session);
    const location = `${this.url}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    res.writeHead(200, { Location: location, 'X-GUploader-UploadID': id, 'Content-Length': '0' });
    res.end();
  }

  private sessionOr404(q: URLSearchParams): UploadSession {
    const s = this.sessions.get(q.get('upload_id') ?? '');
    if (!s) throw new GcsError(404, 'No such upload session', 'notFound');
    return s;
  }

  /**
   * A new request on a session means the client has given up on the one in flight (the library,
   * for one, leaves a stalled PUT open when its source stream fails, then queries the status).
   * GCS answers such a query from what it has persisted; here the stale request is cut off, its
   * data kept up to the last 256 KiB boundary, and then the new request proceeds.
   */
  private async preempt(s: UploadSession): Promise<void> {
    while (s.active) {
      const stale = s.active;
      stale.req.destroy();
      await stale.done;
    }
  }

  private async sessionCancel(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
    drain(req);
    const s = this.sessionOr404(q);
    await this.preempt(s);
    if (s.state === 'open') {
      s.state = 'cancelled';
      await unlink(s.file).catch(() => {});
    }
    // GCS answers a successful cancel with the non-standard 499.
    res.writeHead(499, { 'Content-Length': '0' }).end();
  }

  private async sessionPut(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
    const s = this.sessionOr404(q);
    await this.preempt(s);
    let finished: () => void = () => {};
    const active = { req, done: new Promise<void>((r) => (finished = r)) };
    s.active = active;
    try {
      await this.receiveSessionRequest(req, res, s);
    } finally {
      if (s.active === active) s.active = undefined;
      finished();
    }
  }

  private async receiveSessionRequest(req: IncomingMessage, res: ServerResponse, s: UploadSession): Promise<void> {
    if (s.state === 'done' && s.result) {
      drain(req);
      this.sendJson(res, 200, this.resource(s.result));
      return;
    }
    if (s.state !== 'open') {
      drain(req);
      throw new GcsError(410, `The upload session has been ${s.state === 'cancelled' ? 'cancelled' : 'terminated by an earlier error'}.`, 'gone');
    }

    const cr = (firstHeader(req.headers['content-range']) ?? 'bytes 0-*/*').trim();
    const status = /^bytes \*\/(\*|\d+)$/.exec(cr);
    if (status) {
      drain(req);
      const total = status[1] === '*' ? undefined : Number(status[1]);
      if (total !== undefined && total === s.persisted) {
        const obj = await this.finishSession(s, firstHeader(req.headers['x-goog-hash']));
        this.sendJson(res, 200, this.resource(obj));
        return;
      }
      if (total !== undefined && total < s.persisted) {
        throw new GcsError(400, `Content-Range total ${total} is less than the ${s.persisted} bytes already persisted`, 'invalid');
      }
      this.sendIncomplete(res, s);
      return;
    }
    const m = /^bytes (\d+)-(\*|-?\d+)\/(\*|\d+)$/.exec(cr);
    if (!m) {
      drain(req);
      throw new GcsError(400, `Invalid Content-Range: ${cr}`, 'invalid');
    }
    const first = Number(m[1]);
    const last = m[2] === '*' ? undefined : Number(m[2]);
    const total = m[3] === '*' ? undefined : Number(m[3]);
    if (first > s.persisted) {
      drain(req);
      throw new GcsError(
        400,
        `Invalid request. According to the Content-Range header, the upload offset is ${first} byte(s), which exceeds already uploaded size of ${s.persisted} byte(s).`,
        'invalid',
      );
    }
    if (last !== undefined && last < first - 1) {
      drain(req);
      throw new GcsError(400, `Invalid Content-Range: ${cr}`, 'invalid');
    }

    // Stream the body, skipping bytes GCS already has, writing only whole 256 KiB quanta until we
    // know whether this request ends the upload (the tail stays in memory, < 256 KiB + one chunk).
    const writer = await HashingFileWriter.open(s.file, s.persisted, s.md5.copy(), s.crc);
    let skip = s.persisted - first;
    let received = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flushAligned = async (): Promise<void> => {
      const upTo = Math.floor((writer.position + pendingBytes) / RESUMABLE_QUANTUM) * RESUMABLE_QUANTUM;
      const n = upTo - writer.position;
      if (n <= 0) return;
      const all = Buffer.concat(pending, pendingBytes);
      await writer.write(all.subarray(0, n));
      pending = n < all.length ? [all.subarray(n)] : [];
      pendingBytes = all.length - n;
    };
    let committed = false;
    try {
      try {
        for await (const raw of req) {
          let chunk = raw as Buffer;
          received += chunk.length;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            skip -= drop;
            chunk = chunk.subarray(drop);
            if (chunk.length === 0) continue;
          }
          pending.push(chunk);
          pendingBytes += chunk.length;
          if (pendingBytes >= RESUMABLE_QUANTUM) await flushAligned();
        }
      } catch (err) {
        // The client went away mid-body: like GCS, keep what reached a 256 KiB boundary.
        if (!this.stopped) this.commitProgress(s, writer);
        committed = true;
        throw err;
      }

      if (last !== undefined && received !== last - first + 1) {
        throw new GcsError(400, `Content-Range ${cr} announces ${last - first + 1} bytes but the body had ${received}`, 'invalid');
      }
      const end = first + received;
      if (total !== undefined && end > total) {
        throw new GcsError(400, `Content-Range ${cr}: data beyond the declared total of ${total} bytes`, 'invalid');
      }
      const isFinal = last === undefined || (total !== undefined && end === total);
      if (last === undefined && total !== undefined && end !== total) {
        throw new GcsError(400, `The upload ended at ${end} bytes but Content-Range declared ${total}`, 'invalid');
      }
      if (isFinal) {
        if (pendingBytes > 0) await writer.write(Buffer.concat(pending, pendingBytes));
        this.commitProgress(s, writer);
        committed = true;
        const obj = await this.finishSession(s, firstHeader(req.headers['x-goog-hash']));
        this.sendJson(res, 200, this.resource(obj));
        return;
      }
      this.commitProgress(s, writer);
      committed = true;
      this.sendIncomplete(res, s);
    } finally {
      if (!committed) await writer.truncate(s.persisted).catch(() => {});
      await writer.close().catch(() => {});
    }
  }

  private commitProgress(s: UploadSession, writer: HashingFileWriter): void {
    s.persisted = writer.position;
    s.md5 = writer.md5;
    s.crc = writer.crc;
  }

  private sendIncomplete(res: ServerResponse, s: UploadSession): void {
    const headers: Record<string, string> = { 'Content-Length': '0', 'X-GUploader-UploadID': s.id };
    if (s.persisted > 0) headers['Range'] = `bytes=0-${s.persisted - 1}`;
    res.writeHead(308, headers).end();
  }

  private async finishSession(s: UploadSession, hashHeader: string | undefined): Promise<StoredObject> {
    try {
      if (s.declaredSize !== undefined && s.declaredSize !== s.persisted) {
        throw new GcsError(400, `The upload has ${s.persisted} bytes but X-Upload-Content-Length declared ${s.declaredSize}`, 'invalid');
      }
      const hashes = { md5Hash: s.md5.digest('base64'), crc32c: crc32cBase64(s.crc) };
      verifyClientHashes(hashes, s.meta, hashHeader);
      const obj = this.commitObject(this.bucketOr404(s.bucket), s.name, s.file, s.persisted, hashes, s.meta, s.preconditions);
      s.state = 'done';
      s.result = obj;
      return obj;
    } catch (err) {
      // GCS ends the session when its final request is rejected; nothing becomes visible.
      s.state = 'failed';
      await unlink(s.file).catch(() => {});
      throw err;
    }
  }

  // --- responses ----------------------------------------------------------------------------

  private etag(o: StoredObject): string {
    return Buffer.from(`${o.generation}/${o.metageneration}`).toString('base64');
  }

  private resource(o: StoredObject): FakeGcsObjectResource {
    const encName = encodeURIComponent(o.name);
    const encBucket = encodeURIComponent(o.bucket);
    const r: FakeGcsObjectResource = {
      kind: 'storage#object',
      id: `${o.bucket}/${o.name}/${o.generation}`,
      selfLink: `${this.url}/storage/v1/b/${encBucket}/o/${encName}`,
      mediaLink: `${this.url}/download/storage/v1/b/${encBucket}/o/${encName}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket: o.bucket,
      generation: o.generation,
      metageneration: String(o.metageneration),
      contentType: o.contentType,
      storageClass: 'STANDARD',
      size: String(o.size),
      md5Hash: o.md5Hash,
      crc32c: o.crc32c,
      etag: this.etag(o),
      timeCreated: o.timeCreated,
      updated: o.updated,
      timeStorageClassUpdated: o.timeCreated,
    };
    if (o.metadata) r.metadata = { ...o.metadata };
    if (o.contentEncoding !== undefined) r.contentEncoding = o.contentEncoding;
    if (o.cacheControl !== undefined) r.cacheControl = o.cacheControl;
    if (o.contentDisposition !== undefined) r.contentDisposition = o.contentDisposition;
    if (o.contentLanguage !== undefined) r.contentLanguage = o.contentLanguage;
    return r;
  }

  private bucketResource(b: BucketRecord): Record<string, unknown> {
    return {
      kind: 'storage#bucket',
      id: b.name,
      selfLink: `${this.url}/storage/v1/b/${encodeURIComponent(b.name)}`,
      projectNumber: '0',
      name: b.name,
      timeCreated: b.timeCreated,
      updated: b.timeCreated,
      metageneration: '1',
      location: 'US',
      locationType: 'multi-region',
      storageClass: 'STANDARD',
      etag: 'CAE=',
    };
  }

  private sendJson(res: ServerResponse, status: number, body: unknown, q?: URLSearchParams): void {
    const fields = q?.get('fields');
    const shaped = fields ? applyFields(body, parseFields(fields)) : body;
    const text = JSON.stringify(shaped);
    res.writeHead(status, { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private sendError(res: ServerResponse, err: GcsError): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (err.status === 304) {
      res.writeHead(304).end();
      return;
    }
    const body = {
      error: {
        code: err.status,
        message: err.message,
        errors: [{ message: err.message, domain: 'global', reason: err.reason }],
      },
    };
    const text = JSON.stringify(body);
    res.writeHead(err.status, {
      ...err.extraHeaders,
      'Content-Type': JSON_CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }
}
