import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { LocalStore } from './local.js';
import { StoreError, type SnapStore } from './types.js';

/** The local folder of a `file://` store URL: `file:///abs/path`, or `file://./rel` against the working dir. */
export function localPath(url: string): string {
  const rest = decodeURIComponent(url.slice('file://'.length));
  return rest.startsWith('/') ? rest : resolve(rest);
}

function bucketAndPrefix(url: string): { bucket: string; prefix: string } {
  const u = new URL(url);
  return { bucket: u.hostname, prefix: decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '') };
}

/** An SSE-C key file holds 32 raw bytes or their base64. */
function readCustomerKey(path: string): Buffer {
  const raw = readFileSync(path);
  if (raw.length === 32) return raw;
  const decoded = Buffer.from(raw.toString('utf8').trim(), 'base64');
  if (decoded.length === 32) return decoded;
  throw new StoreError('config', 's3', `--s3-sse-c-key-file ${path}: expected a 256-bit key (32 raw bytes or base64), found ${raw.length} bytes`);
}

/**
 * Opens the store the `--store` URL names, with the store settings of the config; with
 * `--store-retention`, only once the store showed it can lock what it is given.
 */
export async function openStore(config: Config): Promise<SnapStore> {
  const store = await openByUrl(config);
  if (config.storeRetention <= 0) return store;
  try {
    if (!store.checkRetention) {
      throw new StoreError(
        'config',
        store.url,
        '--store-retention is not supported by this provider: it must lock each snapshot while the heartbeats and the recovery claim in the same place stay writable; use S3 Object Lock, GCS per-object retention, Azure version-level immutability or a local folder, or set it to 0',
      );
    }
    await store.checkRetention();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

async function openByUrl(config: Config): Promise<SnapStore> {
  const url = config.store;
  if (url.startsWith('file://')) {
    const root = localPath(url);
    await mkdir(root, { recursive: true });
    const store = new LocalStore(root);
    await store.removeLeftovers();
    await store.migrateMeta();
    return store;
  }
  // Each cloud SDK costs 20+ MB of memory once loaded: load only the one this store needs.
  if (url.startsWith('s3://')) {
    const { bucket, prefix } = bucketAndPrefix(url);
    const { S3Store } = await import('./s3.js');
    return new S3Store({
      bucket,
      prefix,
      forcePathStyle: config.s3ForcePathStyle,
      sse: config.s3Sse as 'none' | 'AES256' | 'aws:kms',
      partSize: config.storePartSize,
      concurrency: config.storeUploadConcurrency,
      timeoutMs: config.storeTimeout,
      maxAttempts: config.storeMaxAttempts,
      ...(config.s3ObjectLockMode === 'GOVERNANCE' || config.s3ObjectLockMode === 'COMPLIANCE' ? { objectLockMode: config.s3ObjectLockMode } : {}),
      ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
      ...(config.s3Region ? { region: config.s3Region } : {}),
      ...(config.s3SseKmsKeyId ? { kmsKeyId: config.s3SseKmsKeyId } : {}),
      ...(config.s3SseCKeyFile ? { sseCustomerKey: readCustomerKey(config.s3SseCKeyFile) } : {}),
      ...(config.s3CredentialsFile ? { credentialsFile: config.s3CredentialsFile, profile: config.s3Profile } : {}),
    });
  }
  if (url.startsWith('gs://')) {
    const { bucket, prefix } = bucketAndPrefix(url);
    const { GcsStore } = await import('./gcs.js');
    return new GcsStore({
      bucket,
      prefix,
      chunkSize: config.gcsChunkSize,
      timeoutMs: config.storeTimeout,
      maxAttempts: config.storeMaxAttempts,
      ...(config.gcsEndpoint ? { endpoint: config.gcsEndpoint } : {}),
      ...(config.gcsKeyFile ? { keyFile: config.gcsKeyFile } : {}),
      retentionMode: config.gcsRetentionMode as 'Unlocked' | 'Locked',
    });
  }
  if (url.startsWith('azblob://')) {
    const { bucket, prefix } = bucketAndPrefix(url);
    const { resolveAzureAuth } = await import('./azblob-auth.js');
    const { AzureBlobStore } = await import('./azblob.js');
    const auth = resolveAzureAuth({ store: url, account: config.azureAccount, keyFile: config.azureKeyFile, sasFile: config.azureSasFile, endpoint: config.azureEndpoint, env: process.env });
    return AzureBlobStore.open({
      container: bucket,
      prefix,
      auth,
      partSize: config.storePartSize,
      concurrency: config.storeUploadConcurrency,
      timeoutMs: config.storeTimeout,
      maxAttempts: config.storeMaxAttempts,
      ...(config.azureEndpoint ? { endpoint: config.azureEndpoint } : {}),
      ...(config.storeRetention > 0 ? { immutabilityMode: config.azureImmutabilityMode as 'Unlocked' | 'Locked' } : {}),
    });
  }
  throw new StoreError('config', url, 'unsupported store URL (use file://, s3://, gs:// or azblob://)');
}
