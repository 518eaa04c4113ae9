import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AnonymousCredential, BlobServiceClient, RestError, StorageSharedKeyCredential, type BlockBlobClient, type ContainerClient } from '@azure/storage-blob';
import { DeadlineError, retryWithBackoff, withDeadline } from '../resilience.js';
import type { AzureAuth } from './azblob-auth.js';
import { blockId, fromAzureMetadata, SHA256_META, toAzureMetadata, WRITE_ID_META } from './azblob-names.js';
import { uploadBlocks } from './block-upload.js';
import { DigestStream } from './digest.js';
import { watchStall } from './stall-watch.js';
import { checkObjectName, checkPrefix, keyOf } from './names.js';
import {
  checkVersionedSize,
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

export interface AzureBlobSettings {
  container: string;
  /** Name prefix from the URL (`azblob://container/prefix`), without slashes at either end. */
  prefix: string;
  auth: AzureAuth;
  /** Shown in the store's URL when the endpoint is not Azure's public cloud (Azurite, sovereign clouds). */
  endpoint?: string;
  partSize: number;
  concurrency: number;
  /** Each attempt of a request, up to its answer's headers. */
  timeoutMs: number;
  maxAttempts: number;
  /**
   * With --store-retention: the mode of the version-level immutability policy uploads given
   * `retainUntil` get (Unlocked may be shortened or removed by an administrator, Locked by nobody).
   */
  immutabilityMode?: 'Unlocked' | 'Locked';
}

/** Azure's error codes that name a permanent cause. */
const PERMANENT: Record<string, StoreErrorCode> = {
  ContainerNotFound: 'no_such_bucket',
  BlobNotFound: 'not_found',
  ResourceNotFound: 'not_found',
  AuthenticationFailed: 'bad_credentials',
  InvalidAuthenticationInfo: 'bad_credentials',
  AuthorizationFailure: 'access_denied',
  AuthorizationPermissionMismatch: 'access_denied',
  AuthorizationResourceTypeMismatch: 'access_denied',
  AuthorizationServiceMismatch: 'access_denied',
  AuthorizationSourceIPMismatch: 'access_denied',
  AuthorizationProtocolMismatch: 'access_denied',
  AccountIsDisabled: 'access_denied',
  InvalidResourceName: 'config',
  InvalidMetadata: 'config',
  Md5Mismatch: 'checksum_mismatch',
  ConditionNotMet: 'precondition_failed',
  BlobAlreadyExists: 'precondition_failed',
  TargetConditionNotMet: 'precondition_failed',
  // A delete an immutability policy or a legal hold refuses: retention holds it, as a lock.
  BlobImmutableDueToPolicy: 'locked',
  BlobImmutableDueToLegalHold: 'locked',
};
const NETWORK = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN']);

function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/**
 * Azure Blob Storage, block blobs. A put stages blocks of `partSize` (each with its md5, which the
 * service checks on arrival), `concurrency` at a time, then commits the block list with the sha256
 * of the whole body in the metadata: until the commit nothing is visible under the name, and a
 * failed upload leaves only uncommitted blocks, which Azure drops after a week. Reads are checked
 * against that sha256. Conditional writes commit with If-Match / If-None-Match on the ETag, which
 * changes at every write.
 */
export class AzureBlobStore implements SnapStore {
  readonly url: string;
  private readonly container: ContainerClient;

  private constructor(
    private readonly s: AzureBlobSettings,
    service: BlobServiceClient,
  ) {
    this.url = `azblob://${s.container}${s.prefix ? `/${s.prefix}` : ''}${s.endpoint ? ` (${s.endpoint})` : ''}`;
    this.container = service.getContainerClient(s.container);
  }

  static async open(s: AzureBlobSettings): Promise<AzureBlobStore> {
    // Retries are ours (`call`), each attempt under its own deadline: the SDK's retry policy sets
    // only a server-side timeout, and a black-holed endpoint would hold a request forever.
    const options = { retryOptions: { maxTries: 1 } };
    const c = s.auth.credential;
    let service: BlobServiceClient;
    if (c.kind === 'sas') service = new BlobServiceClient(`${s.auth.serviceUrl}?${c.token}`, new AnonymousCredential(), options);
    else if (c.kind === 'key') service = new BlobServiceClient(s.auth.serviceUrl, new StorageSharedKeyCredential(c.account, c.key), options);
    else {
      // Loaded only when used: @azure/identity and MSAL cost memory the other two never need.
      const { DefaultAzureCredential } = await import('@azure/identity');
      service = new BlobServiceClient(s.auth.serviceUrl, new DefaultAzureCredential(), options);
    }
    return new AzureBlobStore(s, service);
  }

  private blob(name: string): BlockBlobClient {
    return this.container.getBlockBlobClient(keyOf(this.s.prefix, name));
  }

  private fail(err: unknown, what: string): StoreError {
    if (err instanceof StoreError) return err;
    const where = `${what} (container ${this.s.container})`;
    if (err instanceof DeadlineError) return new StoreError('timeout', this.url, `${where}: no answer within ${this.s.timeoutMs} ms`, true, { cause: err });
    const e = err as Error & { code?: string; statusCode?: number; details?: { errorCode?: string } };
    if (e.name === 'AbortError') return new StoreError('aborted', this.url, `${where}: aborted`, false, { cause: err });
    // Azure's messages end in request id and time lines; the first line is the cause.
    const message = (e.message ?? String(err)).split('\n')[0] ?? '';
    const code = e.details?.errorCode ?? e.code ?? '';
    if (NETWORK.has(code)) return new StoreError('unreachable', this.url, `${where}: ${code} (${message})`, true, { cause: err });
    if (code === 'ETIMEDOUT') return new StoreError('timeout', this.url, `${where}: ${message}`, true, { cause: err });
    if (e.name === 'CredentialUnavailableError' || e.name === 'AuthenticationError' || e.name === 'AggregateAuthenticationError') {
      return new StoreError('bad_credentials', this.url, `${where}: no Azure credential worked (${message}); set --azure-key-file or --azure-sas-file, or give the pod a workload identity`, false, {
        cause: err,
      });
    }
    if (/not permitted for non-TLS/i.test(message)) return new StoreError('config', this.url, `${where}: Azure AD credentials need an https:// --azure-endpoint`, false, { cause: err });
    const status = e.statusCode;
    // Azurite answers a wrong signature with AuthorizationFailure; Azure with AuthenticationFailed.
    const mapped = status === 403 && /failed to authenticate/i.test(message) ? 'bad_credentials' : PERMANENT[code];
    // A HEAD answer has no body, so no message: its status says what there is to say.
    const said = message || (status === 403 ? 'HTTP 403: the key or SAS is wrong, or lacks a permission' : `HTTP ${status}`);
    const named = code ? `${code}: ${said}` : said;
    if (mapped) return new StoreError(mapped, this.url, `${where}: ${named}`, false, { cause: err });
    if (status === 404) return new StoreError('not_found', this.url, `${where}: not found`, false, { cause: err });
    if (status === 401) return new StoreError('bad_credentials', this.url, `${where}: ${named}`, false, { cause: err });
    if (status === 403) return new StoreError('access_denied', this.url, `${where}: ${named}`, false, { cause: err });
    const transient = err instanceof RestError && (status === undefined || status >= 500 || status === 429 || status === 408);
    return new StoreError('failed', this.url, `${where}: ${named}`, transient, { cause: err });
  }

  /** One request: each attempt within --store-timeout, transient failures retried with backoff. */
  private async call<T>(what: string, op: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      return await retryWithBackoff(() => withDeadline(what, this.s.timeoutMs, (deadline) => op(signal ? AbortSignal.any([deadline, signal]) : deadline)), {
        initialDelayMs: 200,
        maxDelayMs: 8_000,
        maxAttempts: this.s.maxAttempts,
        retryWhile: (err) => this.fail(err, what).retryable,
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw new StoreError('aborted', this.url, `${what}: aborted`, false, { cause: err });
      throw this.fail(err, what);
    }
  }

  async put(name: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    checkObjectName(this.url, name);
    const blob = this.blob(name);
    const digest = new DigestStream();
    body.on('error', (err) => digest.destroy(err));
    const uploadId = randomBytes(8).toString('hex');
    const signal = opts.signal;
    // A source that stalls would keep the upload waiting for its next bytes: an abort ends the wait.
    const onAbort = (): void => void digest.destroy(new StoreError('aborted', this.url, `put ${name}: aborted`));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      const staged = await uploadBlocks(body.pipe(digest), {
        partSize: this.s.partSize,
        concurrency: this.s.concurrency,
        ...(signal ? { signal } : {}),
        stage: (i, block, md5) =>
          this.call(`put ${name}: block ${i}`, (s) => blob.stageBlock(blockId(uploadId, i), block, block.length, { transactionalContentMD5: md5, abortSignal: s }), signal).then(() => {}),
      });
      // A body that fit in one part is staged here too: every byte goes through a checked block.
      let blocks = 'blocks' in staged ? staged.blocks : 0;
      let wholeMd5: Buffer | undefined;
      if ('whole' in staged && staged.whole.length > 0) {
        wholeMd5 = createHash('md5').update(staged.whole).digest();
        const md5 = wholeMd5;
        await this.call(`put ${name}: block 0`, (s) => blob.stageBlock(blockId(uploadId, 0), staged.whole, staged.whole.length, { transactionalContentMD5: md5, abortSignal: s }), signal);
        blocks = 1;
      }
      const sent = digest.result;
      const ids = Array.from({ length: blocks }, (_, i) => blockId(uploadId, i));
      await this.call(
        `put ${name}: commit`,
        (s) =>
          blob.commitBlockList(ids, {
            metadata: toAzureMetadata(opts.metadata ?? {}, { [SHA256_META]: sent.sha256Hex }),
            ...(opts.retainUntil ? { immutabilityPolicy: { expiriesOn: opts.retainUntil, policyMode: this.s.immutabilityMode ?? 'Unlocked' } } : {}),
            // The whole body's md5 where it cost nothing more (one block), for other tools to check.
            ...(wholeMd5 ? { blobHTTPHeaders: { blobContentMD5: wholeMd5 } } : {}),
            abortSignal: s,
          }),
        signal,
      );
      const stored = await this.call(`put ${name}: check`, (s) => blob.getProperties({ abortSignal: s }));
      if (stored.contentLength !== sent.size || stored.metadata?.[SHA256_META] !== sent.sha256Hex) {
        await blob.deleteIfExists().catch(() => {});
        throw new StoreError(
          'checksum_mismatch',
          this.url,
          `put ${name}: the store holds ${stored.contentLength} bytes (sha256 ${stored.metadata?.[SHA256_META] ?? 'none'}), ${sent.size} were sent (${sent.sha256Hex}); the object was deleted`,
        );
      }
      return { name, size: sent.size, lastModified: stored.lastModified ?? new Date(), metadata: fromAzureMetadata(stored.metadata), sha256: sent.sha256Hex, verifiedBy: 'block-md5' };
    } catch (err) {
      // pipe() only pauses the source on failure: its file or socket would stay open for ever.
      body.destroy();
      digest.destroy();
      if (signal?.aborted) throw new StoreError('aborted', this.url, `put ${name}: aborted; nothing was committed`, false, { cause: err });
      throw this.fail(err, `put ${name}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async get(name: string, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
    checkObjectName(this.url, name);
    const blob = this.blob(name);
    // The body outlives the deadline of its request: it gets a signal of its own, cut only when
    // the deadline fires before the answer's headers came.
    const res = await this.call(
      `get ${name}`,
      async (deadline) => {
        const own = new AbortController();
        const cut = (): void => own.abort();
        deadline.addEventListener('abort', cut, { once: true });
        try {
          const abortSignal = opts.signal ? AbortSignal.any([own.signal, opts.signal]) : own.signal;
          return await blob.download(0, undefined, { abortSignal, maxRetryRequests: this.s.maxAttempts - 1 });
        } finally {
          deadline.removeEventListener('abort', cut);
        }
      },
      opts.signal,
    );
    const source = res.readableStreamBody as Readable | undefined;
    if (!source) throw new StoreError('failed', this.url, `get ${name}: the store sent no body`);
    const expectSha = res.metadata?.[SHA256_META];
    const expectMd5 = res.contentMD5 ? Buffer.from(res.contentMD5).toString('hex') : undefined;
    const expectSize = res.contentLength;
    const check = new DigestStream({
      md5: !expectSha && expectMd5 !== undefined,
      onEnd: (d) => {
        if (expectSize !== undefined && d.size !== expectSize) return new StoreError('checksum_mismatch', this.url, `get ${name}: read ${d.size} bytes, the store announced ${expectSize}`);
        if (expectSha && d.sha256Hex !== expectSha) return new StoreError('checksum_mismatch', this.url, `get ${name}: sha256 ${d.sha256Hex} of the bytes read, ${expectSha} recorded at put`);
        // Blobs other tools wrote: their Content-MD5 where they set one.
        if (!expectSha && expectMd5 && d.md5Hex !== expectMd5) return new StoreError('checksum_mismatch', this.url, `get ${name}: md5 ${d.md5Hex} of the bytes read, Content-MD5 ${expectMd5}`);
        return undefined;
      },
    });
    source.on('error', (err) => check.destroy(this.fail(err, `get ${name}`)));
    watchStall(source, this.s.timeoutMs, () => {
      const stalled = new StoreError('timeout', this.url, `get ${name} (container ${this.s.container}): no bytes within ${this.s.timeoutMs} ms`, true);
      source.destroy();
      check.destroy(stalled);
    });
    return source.pipe(check);
  }

  async head(name: string): Promise<ObjectInfo | undefined> {
    checkObjectName(this.url, name);
    try {
      const p = await this.call(`head ${name}`, (s) => this.blob(name).getProperties({ abortSignal: s }));
      const info: ObjectInfo = { name, size: p.contentLength ?? 0, lastModified: p.lastModified ?? new Date(0), metadata: fromAzureMetadata(p.metadata) };
      if (p.immutabilityPolicyExpiresOn) info.retainUntil = p.immutabilityPolicyExpiresOn;
      return info;
    } catch (err) {
      const e = this.fail(err, `head ${name}`);
      if (e.code === 'not_found') return undefined;
      throw e;
    }
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    checkPrefix(this.url, prefix);
    const full = this.s.prefix ? `${this.s.prefix}/${prefix}` : prefix;
    const strip = this.s.prefix ? this.s.prefix.length + 1 : 0;
    const out = await this.call(`list ${prefix}`, async (s) => {
      // The locks' dates only where uploads are locked: retention reads them from the listing.
      const pages = this.container
        .listBlobsFlat({ prefix: full, abortSignal: s, ...(this.s.immutabilityMode ? { includeImmutabilityPolicy: true } : {}) })
        .byPage({ maxPageSize: opts.pageSize ?? 1000, ...(opts.pageToken ? { continuationToken: opts.pageToken } : {}) });
      return (await pages.next()).value as
        { segment: { blobItems: { name: string; properties: { contentLength?: number; lastModified: Date; immutabilityPolicyExpiresOn?: Date } }[] }; continuationToken?: string } | undefined;
    });
    const page: ListPage = {
      objects: (out?.segment.blobItems ?? []).map((b) => ({
        name: b.name.slice(strip),
        size: b.properties.contentLength ?? 0,
        lastModified: b.properties.lastModified,
        metadata: {},
        ...(b.properties.immutabilityPolicyExpiresOn ? { retainUntil: b.properties.immutabilityPolicyExpiresOn } : {}),
      })),
    };
    if (out?.continuationToken) page.nextPageToken = out.continuationToken;
    return page;
  }

  /**
   * Locks need a container with version-level immutability (`az storage container-rm create
   * --enable-vlw`, or an account with it); without it Azure refuses every locked commit. A
   * container-level policy is not enough: it would also refuse the heartbeats' overwrites.
   */
  async checkRetention(): Promise<void> {
    const p = await this.call("read the container's immutability setting", (s) => this.container.getProperties({ abortSignal: s }));
    if (!p.isImmutableStorageWithVersioningEnabled) {
      throw new StoreError('config', this.url, `container ${this.s.container} has no version-level immutability: --store-retention needs a container created with it`);
    }
  }

  async delete(name: string): Promise<void> {
    checkObjectName(this.url, name);
    await this.call(`delete ${name}`, (s) => this.blob(name).deleteIfExists({ abortSignal: s }));
  }

  /** One download: its body and its ETag come from the same response, so they always belong together. */
  async readVersioned(name: string, opts: { signal?: AbortSignal } = {}): Promise<VersionedObject | undefined> {
    checkObjectName(this.url, name);
    try {
      return await this.call(
        `read ${name}`,
        async (s) => {
          const res = await this.blob(name).download(0, undefined, { abortSignal: s, maxRetryRequests: 0 });
          const stream = res.readableStreamBody as Readable;
          if (res.contentLength !== undefined && res.contentLength > 0) {
            try {
              checkVersionedSize(this.url, name, res.contentLength);
            } catch (err) {
              stream.destroy();
              throw err;
            }
          }
          const chunks: Buffer[] = [];
          for await (const c of stream) chunks.push(c as Buffer);
          const body = Buffer.concat(chunks);
          checkVersionedSize(this.url, name, body.length);
          if (!res.etag) throw new StoreError('failed', this.url, `read ${name}: the store sent no ETag`);
          const sha = res.metadata?.[SHA256_META];
          if (sha && sha256Hex(body) !== sha) throw new StoreError('checksum_mismatch', this.url, `read ${name}: the bytes read do not match the sha256 recorded at write`);
          return { body, version: res.etag };
        },
        opts.signal,
      );
    } catch (err) {
      const e = this.fail(err, `read ${name}`);
      if (e.code === 'not_found') return undefined;
      throw e;
    }
  }

  /**
   * One checked block, committed with If-None-Match: * (create) or If-Match: <ETag> (update); Azure
   * decides atomically. A commit that lost its staged block found another writer's commit in
   * between (a commit drops every block it does not list): a loss as well.
   */
  async putIfVersion(name: string, body: Buffer, expected: string | undefined, opts: VersionedPutOptions = {}): Promise<string> {
    checkObjectName(this.url, name);
    checkVersionedSize(this.url, name, body.length);
    const blob = this.blob(name);
    const writeId = randomBytes(12).toString('hex');
    const id = blockId(writeId.slice(0, 16), 0);
    const md5 = createHash('md5').update(body).digest();
    const conditions = expected === undefined ? { ifNoneMatch: '*' } : { ifMatch: expected };
    try {
      if (body.length > 0) await this.call(`put ${name}: block`, (s) => blob.stageBlock(id, body, body.length, { transactionalContentMD5: md5, abortSignal: s }), opts.signal);
      const out = await this.call(
        `put ${name}`,
        (s) =>
          blob.commitBlockList(body.length > 0 ? [id] : [], {
            conditions,
            metadata: toAzureMetadata(opts.metadata ?? {}, { [SHA256_META]: sha256Hex(body), [WRITE_ID_META]: writeId }),
            blobHTTPHeaders: { blobContentMD5: md5 },
            abortSignal: s,
          }),
        opts.signal,
      );
      if (!out.etag) throw new StoreError('failed', this.url, `put ${name}: the store sent no ETag; the object may have been written`);
      return out.etag;
    } catch (err) {
      const e = this.fail(err, `put ${name}`);
      const lost = e.code === 'precondition_failed' || /InvalidBlockList/.test(e.message) || (expected !== undefined && e.code === 'not_found');
      if (!lost) throw e;
      const landed = await blob.getProperties().catch(() => undefined);
      if (landed?.metadata?.[WRITE_ID_META] === writeId && landed.etag) return landed.etag;
      throw new StoreError('precondition_failed', this.url, `put ${name}: ${expected === undefined ? 'the object already exists' : `the object is no longer at version ${expected}`}`, false, {
        cause: err,
      });
    }
  }

  async close(): Promise<void> {}
}
