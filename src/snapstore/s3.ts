import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  type ObjectLockMode,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { fromIni } from '@aws-sdk/credential-provider-ini';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { DigestStream, type DigestResult } from './digest.js';
import { checkObjectName, checkPrefix, keyOf } from './names.js';
import {
  checkVersionedSize,
  ObjectLockedError,
  StoreError,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  type SnapStore,
  type StoreErrorCode,
  type VersionedObject,
  type VersionedPutOptions,
} from './types.js';

export interface S3Settings {
  bucket: string;
  /** Key prefix from the URL (`s3://bucket/prefix`), without slashes at either end. */
  prefix: string;
  /** For S3-compatible stores (MinIO, Ceph): their URL. */
  endpoint?: string;
  forcePathStyle: boolean;
  region?: string;
  sse: 'none' | 'AES256' | 'aws:kms';
  kmsKeyId?: string;
  /** SSE-C: the 256-bit key the store encrypts with; it must be given again to read. */
  sseCustomerKey?: Buffer;
  credentialsFile?: string;
  profile?: string;
  partSize: number;
  concurrency: number;
  /** Connection and socket-idle timeout of each request. */
  timeoutMs: number;
  maxAttempts: number;
  /** Object Lock mode of uploads given `retainUntil`; default: the bucket's default retention mode, else GOVERNANCE. */
  objectLockMode?: 'GOVERNANCE' | 'COMPLIANCE';
}

/** Our one metadata key: the part size, so a reader can recompute a multipart ETag. */
const PART_SIZE_META = 'ebs-part-size';
/**
 * A random id on each conditional write: when a retried PutObject meets 412, the id on the object
 * tells whether the 412 is our own earlier attempt (its answer lost) or another writer.
 */
const WRITE_ID_META = 'ebs-write-id';

/** Errors that name a permanent cause: retrying will not help. */
const PERMANENT: Record<string, StoreErrorCode> = {
  NoSuchBucket: 'no_such_bucket',
  NoSuchKey: 'not_found',
  NotFound: 'not_found',
  AccessDenied: 'access_denied',
  Forbidden: 'access_denied',
  AllAccessDisabled: 'access_denied',
  InvalidAccessKeyId: 'bad_credentials',
  SignatureDoesNotMatch: 'bad_credentials',
  ExpiredToken: 'bad_credentials',
  InvalidToken: 'bad_credentials',
  CredentialsProviderError: 'bad_credentials',
  InvalidBucketName: 'config',
  PermanentRedirect: 'config',
  AuthorizationHeaderMalformed: 'config',
  PreconditionFailed: 'precondition_failed',
  // S3 answers 409 when another conditional write to the key is in flight: it lost all the same.
  ConditionalRequestConflict: 'precondition_failed',
};

/**
 * S3 and S3-compatible stores. Uploads stream through `lib-storage` in parts of `partSize` (memory:
 * about `partSize` x `concurrency`); a failed upload aborts its multipart upload, so nothing
 * appears under the name. After the upload the ETag the store reports is compared with the md5 of
 * what was sent (single part) or with the multipart ETag computed from the part md5s.
 */
export class S3Store implements SnapStore {
  readonly url: string;
  private readonly client: S3Client;
  /** Set once `checkRetention` found the bucket locked: the mode uploads are locked in. */
  private lock: Promise<ObjectLockMode> | undefined;

  constructor(private readonly s: S3Settings) {
    this.url = `s3://${s.bucket}${s.prefix ? `/${s.prefix}` : ''}${s.endpoint ? ` (${s.endpoint})` : ''}`;
    const config: S3ClientConfig = {
      forcePathStyle: s.forcePathStyle,
      maxAttempts: s.maxAttempts,
      requestHandler: new NodeHttpHandler({ connectionTimeout: s.timeoutMs, socketTimeout: s.timeoutMs }),
      region: s.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
    };
    if (s.endpoint) config.endpoint = s.endpoint;
    if (s.credentialsFile) config.credentials = fromIni({ filepath: s.credentialsFile, profile: s.profile ?? 'default' });
    this.client = new S3Client(config);
  }

  private key(name: string): string {
    return keyOf(this.s.prefix, name);
  }

  private encryption(): Record<string, string> {
    const p: Record<string, string> = {};
    if (this.s.sse !== 'none') p['ServerSideEncryption'] = this.s.sse;
    if (this.s.sse === 'aws:kms' && this.s.kmsKeyId) p['SSEKMSKeyId'] = this.s.kmsKeyId;
    Object.assign(p, this.customerKey());
    return p;
  }

  private customerKey(): Record<string, string> {
    const key = this.s.sseCustomerKey;
    if (!key) return {};
    return {
      SSECustomerAlgorithm: 'AES256',
      SSECustomerKey: key.toString('base64'),
      SSECustomerKeyMD5: createHash('md5').update(key).digest('base64'),
    };
  }

  /** With SSE-KMS and SSE-C the ETag is not an md5 of the content, so it proves nothing. */
  private etagIsMd5(): boolean {
    return this.s.sse !== 'aws:kms' && !this.s.sseCustomerKey;
  }

  private fail(err: unknown, what: string): StoreError {
    if (err instanceof StoreError) return err;
    const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number }; Code?: string };
    const name = e.Code ?? e.name;
    const where = `${what} (bucket ${this.s.bucket})`;
    const permanent = PERMANENT[name];
    if (permanent) return new StoreError(permanent, this.url, `${where}: ${name}${e.message && e.message !== name ? `: ${e.message}` : ''}`, false, { cause: err });
    if (e.name === 'AbortError' || name === 'AbortError') return new StoreError('aborted', this.url, `${where}: aborted`, false, { cause: err });
    if (e.name === 'TimeoutError' || e.code === 'ETIMEDOUT' || /timed? ?out/i.test(e.message)) {
      return new StoreError('timeout', this.url, `${where}: no answer within ${this.s.timeoutMs} ms (${e.message})`, true, { cause: err });
    }
    if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'EHOSTUNREACH' || e.code === 'ECONNRESET') {
      return new StoreError('unreachable', this.url, `${where}: ${e.code} (${e.message})`, true, { cause: err });
    }
    const status = e.$metadata?.httpStatusCode;
    if (status === 404) return new StoreError('not_found', this.url, `${where}: not found`, false, { cause: err });
    if (status === 403) return new StoreError('access_denied', this.url, `${where}: access denied`, false, { cause: err });
    if (status === 412) return new StoreError('precondition_failed', this.url, `${where}: precondition failed`, false, { cause: err });
    return new StoreError('failed', this.url, `${where}: ${name}: ${e.message}`, status === undefined || status >= 500 || status === 429, { cause: err });
  }

  private checkEtag(etag: string | undefined, sent: DigestResult): string | undefined {
    if (!this.etagIsMd5()) return undefined;
    const got = (etag ?? '').replace(/"/g, '');
    if (got === sent.md5Hex || got === sent.multipartEtag) return undefined;
    return `ETag ${got} matches neither the md5 ${sent.md5Hex} nor the multipart ETag ${sent.multipartEtag ?? '-'} of the bytes sent`;
  }

  /**
   * Object Lock needs a bucket created with it (it also turns on versioning). Asked once; the mode
   * is the flag's, else the bucket's default retention's, else GOVERNANCE (which an account with
   * s3:BypassGovernanceRetention may lift, unlike COMPLIANCE).
   */
  checkRetention(): Promise<void> {
    this.lock ??= this.bucketLockMode().catch((err: unknown) => {
      this.lock = undefined;
      throw err;
    });
    return this.lock.then(() => undefined);
  }

  private async bucketLockMode(): Promise<ObjectLockMode> {
    try {
      const out = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.s.bucket }));
      if (out.ObjectLockConfiguration?.ObjectLockEnabled !== 'Enabled') throw new Error('ObjectLockConfigurationNotFoundError');
      return this.s.objectLockMode ?? out.ObjectLockConfiguration.Rule?.DefaultRetention?.Mode ?? 'GOVERNANCE';
    } catch (err) {
      const name = (err as { name?: string }).name ?? '';
      if (name === 'ObjectLockConfigurationNotFoundError' || (err as Error).message === 'ObjectLockConfigurationNotFoundError') {
        throw new StoreError('config', this.url, `bucket ${this.s.bucket} has no Object Lock: --store-retention needs a bucket created with Object Lock enabled`, false, { cause: err });
      }
      throw this.fail(err, 'read the Object Lock configuration');
    }
  }

  /** The upload parameters that lock an object until `until`; a checksum, which S3 demands of every locked upload. */
  private async lockParams(until: Date | undefined): Promise<Record<string, unknown>> {
    if (!until) return {};
    await this.checkRetention();
    // Explicit, so the SDK sends a checksum even when told to only where required (AWS_REQUEST_CHECKSUM_CALCULATION).
    return { ObjectLockMode: await this.lock, ObjectLockRetainUntilDate: until, ChecksumAlgorithm: 'CRC32' };
  }

  async put(name: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    checkObjectName(this.url, name);
    const lockParams = await this.lockParams(opts.retainUntil);
    const digest = new DigestStream({ partSize: this.s.partSize });
    body.on('error', (err) => digest.destroy(err));
    const metadata = { ...(opts.metadata ?? {}), [PART_SIZE_META]: String(this.s.partSize) };
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.s.bucket, Key: this.key(name), Body: body.pipe(digest), Metadata: metadata, ...this.encryption(), ...lockParams },
      partSize: this.s.partSize,
      queueSize: this.s.concurrency,
      leavePartsOnError: false,
    });
    const onAbort = (): void => void upload.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (opts.signal?.aborted) throw new StoreError('aborted', this.url, `put ${name}: aborted`);
      const out = await upload.done();
      const sent = digest.result;
      const problem = this.checkEtag(out.ETag, sent);
      if (problem) {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.s.bucket, Key: this.key(name) })).catch(() => {});
        throw new StoreError('checksum_mismatch', this.url, `put ${name}: ${problem}; the object was deleted`);
      }
      const head = await this.head(name);
      if (!head || head.size !== sent.size) {
        throw new StoreError('checksum_mismatch', this.url, `put ${name}: the store holds ${head?.size ?? 'no'} bytes, ${sent.size} were sent`);
      }
      return { ...head, sha256: sent.sha256Hex, verifiedBy: this.etagIsMd5() ? 'etag-md5' : 'size' };
    } catch (err) {
      // pipe() only pauses the source on failure: its file or socket would stay open for ever.
      body.destroy();
      throw this.fail(err, `put ${name}`);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  async get(name: string, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
    checkObjectName(this.url, name);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...this.customerKey() }), opts.signal ? { abortSignal: opts.signal } : {});
      const body = out.Body as Readable;
      const partSize = Number(out.Metadata?.[PART_SIZE_META] ?? 0) || undefined;
      const etag = out.ETag;
      const expectSize = out.ContentLength;
      const check = new DigestStream({
        md5: true,
        partSize,
        onEnd: (d) => {
          if (expectSize !== undefined && d.size !== expectSize) return new StoreError('checksum_mismatch', this.url, `get ${name}: read ${d.size} bytes, the store announced ${expectSize}`);
          // Objects uploaded by other tools in parts of an unknown size cannot be checked by ETag.
          const multipart = /-\d+"?$/.test(etag ?? '');
          if (multipart && !partSize) return undefined;
          const problem = out.ServerSideEncryption === 'aws:kms' || out.SSECustomerAlgorithm ? undefined : this.checkEtag(etag, d);
          return problem ? new StoreError('checksum_mismatch', this.url, `get ${name}: ${problem}`) : undefined;
        },
      });
      body.on('error', (err) => check.destroy(this.fail(err, `get ${name}`)));
      return body.pipe(check);
    } catch (err) {
      throw this.fail(err, `get ${name}`);
    }
  }

  async head(name: string): Promise<ObjectInfo | undefined> {
    checkObjectName(this.url, name);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...this.customerKey() }));
      // The store's own bookkeeping is not the caller's metadata.
      const metadata = Object.fromEntries(Object.entries(out.Metadata ?? {}).filter(([k]) => k !== PART_SIZE_META && k !== WRITE_ID_META));
      const info: ObjectInfo = { name, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0), metadata };
      if (out.ObjectLockRetainUntilDate) info.retainUntil = out.ObjectLockRetainUntilDate;
      return info;
    } catch (err) {
      const e = this.fail(err, `head ${name}`);
      if (e.code === 'not_found') return undefined;
      throw e;
    }
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    checkPrefix(this.url, prefix);
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.s.bucket,
          Prefix: this.s.prefix ? `${this.s.prefix}/${prefix}` : prefix,
          MaxKeys: opts.pageSize ?? 1000,
          ...(opts.pageToken ? { ContinuationToken: opts.pageToken } : {}),
        }),
      );
      const strip = this.s.prefix ? this.s.prefix.length + 1 : 0;
      const page: ListPage = {
        objects: (out.Contents ?? []).map((o) => ({ name: (o.Key ?? '').slice(strip), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0), metadata: {} })),
      };
      if (out.IsTruncated && out.NextContinuationToken) page.nextPageToken = out.NextContinuationToken;
      return page;
    } catch (err) {
      throw this.fail(err, `list ${prefix}`);
    }
  }

  async delete(name: string): Promise<void> {
    checkObjectName(this.url, name);
    if (this.lock) return this.deleteVersion(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.s.bucket, Key: this.key(name) }));
    } catch (err) {
      throw this.fail(err, `delete ${name}`);
    }
  }

  /**
   * In a locked (so versioned) bucket a delete without a version only hides the object behind a
   * delete marker, which S3 never refuses: the locked bytes would stay, unlisted, for ever. The
   * current version is deleted instead, which S3 refuses while it is retained.
   */
  private async deleteVersion(name: string): Promise<void> {
    let head: HeadObjectCommandOutput;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...this.customerKey() }));
    } catch (err) {
      const e = this.fail(err, `delete ${name}`);
      if (e.code === 'not_found') return;
      throw e;
    }
    const until = head.ObjectLockRetainUntilDate;
    if (until && until.getTime() > Date.now()) throw new ObjectLockedError(this.url, `delete ${name}: retained (${head.ObjectLockMode ?? 'Object Lock'}) until ${until.toISOString()}`, until);
    if (head.ObjectLockLegalHoldStatus === 'ON') throw new ObjectLockedError(this.url, `delete ${name}: under a legal hold`);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...(head.VersionId ? { VersionId: head.VersionId } : {}) }));
    } catch (err) {
      const e = err as { name?: string; message?: string };
      // AWS answers AccessDenied, MinIO InvalidRequest "Object is WORM protected".
      if (e.name === 'AccessDenied' || /WORM|retention|object lock/i.test(e.message ?? '')) {
        throw new ObjectLockedError(this.url, `delete ${name} (version ${head.VersionId ?? '-'}): refused by the store: ${e.message ?? e.name}`, until, { cause: err });
      }
      throw this.fail(err, `delete ${name}`);
    }
  }

  /** One GetObject: its body and its ETag come from the same response, so they always belong together. */
  async readVersioned(name: string, opts: { signal?: AbortSignal } = {}): Promise<VersionedObject | undefined> {
    checkObjectName(this.url, name);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...this.customerKey() }), opts.signal ? { abortSignal: opts.signal } : {});
      const stream = out.Body as Readable;
      if (out.ContentLength !== undefined) {
        try {
          checkVersionedSize(this.url, name, out.ContentLength);
        } catch (err) {
          stream.destroy();
          throw err;
        }
      }
      const body = Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
      checkVersionedSize(this.url, name, body.length);
      if (!out.ETag) throw new StoreError('failed', this.url, `read ${name}: the store sent no ETag`);
      const md5 = createHash('md5').update(body).digest('hex');
      const plain = out.ServerSideEncryption !== 'aws:kms' && !out.SSECustomerAlgorithm && !/-\d+"?$/.test(out.ETag);
      if (plain && out.ETag.replace(/"/g, '') !== md5) throw new StoreError('checksum_mismatch', this.url, `read ${name}: ETag ${out.ETag} does not match the md5 ${md5} of the bytes read`);
      return { body, version: out.ETag };
    } catch (err) {
      const e = this.fail(err, `read ${name}`);
      if (e.code === 'not_found') return undefined;
      throw e;
    }
  }

  /** PutObject with If-None-Match: * (create) or If-Match: <ETag> (update); S3 decides atomically. */
  async putIfVersion(name: string, body: Buffer, expected: string | undefined, opts: VersionedPutOptions = {}): Promise<string> {
    checkObjectName(this.url, name);
    checkVersionedSize(this.url, name, body.length);
    const writeId = randomBytes(12).toString('hex');
    const md5 = createHash('md5').update(body).digest();
    const condition = expected === undefined ? { IfNoneMatch: '*' } : { IfMatch: expected };
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: this.s.bucket,
          Key: this.key(name),
          Body: body,
          ContentLength: body.length,
          ContentMD5: md5.toString('base64'),
          Metadata: { ...(opts.metadata ?? {}), [WRITE_ID_META]: writeId },
          ...condition,
          ...this.encryption(),
        }),
        opts.signal ? { abortSignal: opts.signal } : {},
      );
      if (!out.ETag) throw new StoreError('failed', this.url, `put ${name}: the store sent no ETag; the object may have been written`);
      // Not deleted on a mismatch, unlike `put`: a later writer may already have replaced it.
      if (this.etagIsMd5() && out.ETag.replace(/"/g, '') !== md5.toString('hex')) {
        throw new StoreError('checksum_mismatch', this.url, `put ${name}: ETag ${out.ETag} does not match the md5 ${md5.toString('hex')} of the bytes sent`);
      }
      return out.ETag;
    } catch (err) {
      const e = this.fail(err, `put ${name}`);
      // If-Match on a key that does not exist is NoSuchKey, not 412: it lost all the same.
      const lost = e.code === 'precondition_failed' || (expected !== undefined && e.code === 'not_found');
      if (!lost) throw e;
      const landed = await this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key: this.key(name), ...this.customerKey() })).catch(() => undefined);
      if (landed?.Metadata?.[WRITE_ID_META] === writeId && landed.ETag) return landed.ETag;
      throw new StoreError('precondition_failed', this.url, `put ${name}: ${expected === undefined ? 'the object already exists' : `the object is no longer at version ${expected}`}`, false, {
        cause: err,
      });
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
