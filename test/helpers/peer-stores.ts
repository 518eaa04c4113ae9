import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { fileURLToPath } from 'node:url';
import { AccountSASPermissions, BlobServiceClient, generateAccountSASQueryParameters, StorageSharedKeyCredential } from '@azure/storage-blob';
import { freePort } from './cluster.js';
import { flipByteInFile } from './files.js';
import { FlakyProxy } from './flaky-proxy.js';
import { PeerProcess, peerBinary } from './peer-process.js';
import { createS3Bucket, proxiedFixture, proxiedS3Fixture, type StoreFixture } from './store-fixtures.js';

// The contract suite's real object stores, built by scripts/peers.sh into .peers/: fake-gcs-server
// for GCS and MinIO for S3; Azurite (an npm package) for Azure Blob. Each runs behind a FlakyProxy, which injects the 5xx answers and
// connection resets no real server gives on demand; a black hole is the process frozen (SIGSTOP).

const BUCKET = 'ebs-contract';
const GCS_STORE = `gs://${BUCKET}/backups/main`;

export const FAKE_GCS = peerBinary('fake-gcs-server', 'fake-gcs-server');
export const MINIO = peerBinary('minio', 'minio');

/** The binary's path, or a throw naming it: callers skip first, so this only fires on a misuse. */
function pathOf(peer: { path: string } | { skip: string }): string {
  if ('skip' in peer) throw new Error(peer.skip);
  return peer.path;
}

/**
 * fake-gcs-server with its filesystem backend, so an object's bytes can be corrupted on disk. Its
 * resumable uploads answer with a session URL on `-external-url`, which is the proxy: the upload's
 * later requests meet the injected faults too.
 */
export async function gcsFixture(): Promise<StoreFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-fake-gcs-'));
  // The bucket is a folder under -data, loaded at start.
  mkdirSync(join(dir, 'seed', BUCKET), { recursive: true });
  const port = await freePort();
  const direct = `http://127.0.0.1:${port}`;
  const proxy = await FlakyProxy.start(direct);
  const server = await PeerProcess.start(
    pathOf(FAKE_GCS),
    [
      '-scheme',
      'http',
      '-host',
      '127.0.0.1',
      '-port',
      String(port),
      '-backend',
      'filesystem',
      '-filesystem-root',
      join(dir, 'objects'),
      '-data',
      join(dir, 'seed'),
      '-external-url',
      proxy.url,
      '-log-level',
      'warn',
    ],
    { ready: () => fetch(`${direct}/storage/v1/b/${BUCKET}`).then((r) => r.ok) },
  );
  return proxiedFixture({
    provider: 'gcs (fake-gcs-server)',
    flags: { store: GCS_STORE, 'gcs-endpoint': proxy.url },
    api: 'gcs',
    server,
    proxy,
    async corrupt(name) {
      const path = join(dir, 'objects', BUCKET, 'backups', 'main', ...name.split('/'));
      flipByteInFile(path, Math.floor(statSync(path).size / 2));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  });
}

const MINIO_USER = 'ebs-contract';
const MINIO_SECRET = 'ebs-contract-secret';

/** A client of the fixture's MinIO with its root keys, to inspect objects (retention, versions) as an operator would. */
export function minioClient(fixture: StoreFixture): S3Client {
  const endpoint = fixture.flags['s3-endpoint'];
  if (!endpoint) throw new Error(`${fixture.provider} is not a MinIO fixture`);
  return new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_SECRET } });
}

/** MinIO on one local drive (a folder); `objectLock`: its bucket is created with Object Lock. */
export async function minioFixture(opts: { objectLock?: boolean } = {}): Promise<StoreFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-minio-'));
  const [port, consolePort] = [await freePort(), await freePort()];
  const direct = `http://127.0.0.1:${port}`;
  const server = await PeerProcess.start(pathOf(MINIO), ['server', join(dir, 'drive'), '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], {
    env: { MINIO_ROOT_USER: MINIO_USER, MINIO_ROOT_PASSWORD: MINIO_SECRET, MINIO_BROWSER: 'off', MINIO_UPDATE: 'off' },
    ready: () => fetch(`${direct}/minio/health/ready`).then((r) => r.ok),
  });
  await createS3Bucket(direct, MINIO_USER, MINIO_SECRET, opts);
  return proxiedS3Fixture(direct, [MINIO_USER, MINIO_SECRET], {
    provider: 's3 (MinIO)',
    server,
    // Tried: a byte flipped in an object's part.1 is caught by MinIO's own bitrot check, which then
    // stops sending the body; the read fails only at --store-timeout, as `timeout`, so the case
    // would prove MinIO's check, not ours (s3rver's and fake-gcs-server's runs prove ours).
    cannotCorrupt: 'MinIO detects a flipped byte itself (bitrot protection) and stalls the read: our checksum is never reached',
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  });
}

/**
 * Registers `suite` when the peer was built; otherwise one skipped test under `title` that names the
 * missing binary, so the runner's closing count shows the gap.
 */
export function withPeer(peer: { path: string } | { skip: string }, title: string, suite: () => void): void {
  if ('path' in peer) suite();
  else describe(title, () => it(`runs against ${title.split(': ').pop() ?? title}`, { skip: peer.skip }, () => {}));
}

/** Azurite's blob service, from the dev dependency `azurite`. */
export const AZURITE: { path: string } | { skip: string } = ((): { path: string } | { skip: string } => {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node_modules', '.bin', 'azurite-blob');
  return existsSync(path) ? { path } : { skip: 'node_modules/.bin/azurite-blob is missing: the dev dependency azurite is not installed' };
})();

/** The development account every Azurite has, with its published key (not a secret). */
const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
export const AZURITE_CONTAINER = 'ebs-contract';

/** A client of Azurite's blob service that bypasses the store under test (to set up, and to read raw bytes). */
export function azuriteClient(endpoint: string): BlobServiceClient {
  return new BlobServiceClient(`${endpoint}/${AZURITE_ACCOUNT}`, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
}

/**
 * Azurite on disk (not `--inMemoryPersistence`), so an object's bytes can be corrupted where they
 * lie: Azurite appends blocks to shared extent files, so the fixture finds an object's bytes by
 * content. The account key is handed over in a file, as an operator would.
 */
export async function azuriteFixture(): Promise<StoreFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-azurite-'));
  const keyFile = join(dir, 'account.key');
  writeFileSync(keyFile, `${AZURITE_KEY}\n`);
  const port = await freePort();
  const direct = `http://127.0.0.1:${port}`;
  const server = await PeerProcess.start(
    pathOf(AZURITE),
    ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', join(dir, 'data'), '--skipApiVersionCheck', '--disableTelemetry', '--silent'],
    { ready: () => fetch(`${direct}/${AZURITE_ACCOUNT}?comp=list`).then((r) => r.status < 500) },
  );
  const setup = azuriteClient(direct);
  await setup.getContainerClient(AZURITE_CONTAINER).createIfNotExists();
  const proxy = await FlakyProxy.start(direct);
  const endpointFlags = (url: string): Record<string, string> => ({ 'azure-endpoint': `${url}/${AZURITE_ACCOUNT}` });
  return proxiedFixture({
    provider: 'azblob (Azurite)',
    flags: { store: `azblob://${AZURITE_CONTAINER}/backups/main`, 'azure-account': AZURITE_ACCOUNT, 'azure-key-file': keyFile, ...endpointFlags(proxy.url) },
    api: 'azure',
    endpointFlags,
    server,
    proxy,
    async corrupt(name) {
      // 64 bytes from the middle of the object, read past the store, then looked for on disk.
      const blob = setup.getContainerClient(AZURITE_CONTAINER).getBlobClient(`backups/main/${name}`);
      const size = (await blob.getProperties()).contentLength ?? 0;
      const probe = await blob.downloadToBuffer(Math.floor(size / 2), 64);
      const extents = join(dir, 'data', '__blobstorage__');
      for (const f of readdirSync(extents)) {
        const at = readFileSync(join(extents, f)).indexOf(probe);
        if (at >= 0) return flipByteInFile(join(extents, f), at);
      }
      throw new Error(`the bytes of ${name} are in no extent file under ${extents}`);
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  });
}

/** An account SAS token of Azurite's account, with these permissions (`racwdl`: all a store needs) for an hour. */
export function azuriteSas(permissions: string): string {
  return generateAccountSASQueryParameters(
    { services: 'b', resourceTypes: 'sco', permissions: AccountSASPermissions.parse(permissions), expiresOn: new Date(Date.now() + 3_600_000) },
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  ).toString();
}
