import './reaper.js';
import { spawn } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { loadConfig } from '../../src/config/index.js';
import { openStore, type SnapStore } from '../../src/snapstore/index.js';
import { freePort } from './cluster.js';
import { flipByteInFile } from './files.js';
import { FlakyProxy } from './flaky-proxy.js';
import { S3Server } from './s3-server.js';

/** One provider under the contract suite, with the faults it can inject for real. */
export interface StoreFixture {
  provider: string;
  /** The flags that point a sidecar at this store. */
  flags: Record<string, string>;
  /** Opens the store through the same path `serve` uses (`openStore` on a config built from flags). */
  open(flags?: Record<string, string>): Promise<SnapStore>;
  /** Flips bytes of a stored object behind the store's back (absent where the server keeps objects in memory). */
  corrupt?(name: string): Promise<void>;
  /** Why `corrupt` is absent, for the skipped case. */
  cannotCorrupt?: string;
  /** Flags that point the store at an endpoint nobody listens on. */
  unreachableFlags?(): Promise<Record<string, string>>;
  /** Flags that point the store at a given endpoint URL. */
  endpointFlags?(url: string): Record<string, string>;
  /** Makes the endpoint a black hole (SIGSTOP) and back. */
  freeze?(): void;
  thaw?(): void;
  missingBucketFlags?: Record<string, string>;
  /** The next `count` requests (that `match` accepts, if given) fail with a transient fault (5xx / throttling, or a reset connection). */
  injectTransient?(count: number, fault: { status: number } | 'reset', match?: (req: IncomingMessage) => boolean): void;
  /** Injected faults no request has met yet: a test proves its faults were hit. */
  faultsLeft?(): number;
  stop(): Promise<void>;
}

export function configFor(flags: Record<string, string>): ReturnType<typeof loadConfig>['config'] {
  return loadConfig({ flags, env: {}, requireMember: false }).config;
}

export async function localFixture(): Promise<StoreFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-local-store-'));
  return {
    provider: 'local',
    flags: { store: `file://${dir}` },
    open: (flags = {}) => openStore(configFor({ store: `file://${dir}`, ...flags })),
    async corrupt(name) {
      const path = join(dir, ...name.split('/'));
      flipByteInFile(path, Math.floor(statSync(path).size / 2));
    },
    async stop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const S3_BUCKET = 'ebs-contract';
export const S3_STORE = `s3://${S3_BUCKET}/backups/main`;

/** The flags that point the S3 store at `endpoint` with these keys, written to a credentials file as an operator would. */
export function s3Flags(endpoint: string, accessKey: string, secretKey: string): { base: Record<string, string>; cleanup: () => void } {
  const credsDir = mkdtempSync(join(tmpdir(), 'ebs-s3-creds-'));
  const credentials = join(credsDir, 'credentials');
  writeFileSync(credentials, `[default]\naws_access_key_id = ${accessKey}\naws_secret_access_key = ${secretKey}\n`);
  return {
    base: { 's3-endpoint': endpoint, 's3-force-path-style': 'true', 's3-credentials-file': credentials },
    cleanup: () => rmSync(credsDir, { recursive: true, force: true }),
  };
}

/** Creates the contract bucket through the S3 API (servers that are not told their buckets on the command line); `objectLock` also turns on versioning. */
export async function createS3Bucket(endpoint: string, accessKeyId: string, secretAccessKey: string, opts: { objectLock?: boolean; bucket?: string } = {}): Promise<void> {
  const s3 = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId, secretAccessKey } });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: opts.bucket ?? S3_BUCKET, ...(opts.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
  } finally {
    s3.destroy();
  }
}

/** A store server in a process of its own, behind a FlakyProxy: what its fixture can do is the same for every such server. */
export interface ProxiedServer {
  provider: string;
  /** The flags that point the store at the proxy. */
  flags: Record<string, string>;
  api: 's3' | 'gcs' | 'azure';
  /** The flags that point the store at another endpoint URL (default: --<api>-endpoint set to it). */
  endpointFlags?: (url: string) => Record<string, string>;
  server: { freeze(): void; thaw(): void; stop(): Promise<void> };
  proxy: FlakyProxy;
  corrupt?: (name: string) => Promise<void>;
  cannotCorrupt?: string;
  /** Removes what the fixture left on disk, once the server has stopped. */
  cleanup(): void;
}

const SCHEME = { s3: 's3', gcs: 'gs', azure: 'azblob' } as const;

export function proxiedFixture(p: ProxiedServer): StoreFixture {
  const endpointFlags = p.endpointFlags ?? ((url: string) => ({ [`${p.api}-endpoint`]: url }));
  const fx: StoreFixture = {
    provider: p.provider,
    flags: p.flags,
    open: (more = {}) => openStore(configFor({ ...p.flags, ...more })),
    unreachableFlags: async () => endpointFlags(`http://127.0.0.1:${await freePort()}`),
    endpointFlags,
    freeze: () => p.server.freeze(),
    thaw: () => p.server.thaw(),
    missingBucketFlags: { store: `${SCHEME[p.api]}://no-such-bucket-here/x` },
    injectTransient: (count, fault, match) => p.proxy.failNext(count, fault, match),
    faultsLeft: () => p.proxy.armed,
    async stop() {
      await p.proxy.stop();
      await p.server.stop();
      p.cleanup();
    },
  };
  if (p.corrupt) fx.corrupt = p.corrupt;
  if (p.cannotCorrupt) fx.cannotCorrupt = p.cannotCorrupt;
  return fx;
}

/** An S3 server behind a FlakyProxy, reached with these keys through a credentials file. */
export async function proxiedS3Fixture(endpoint: string, keys: [string, string], p: Omit<ProxiedServer, 'flags' | 'api' | 'proxy'>): Promise<StoreFixture> {
  const proxy = await FlakyProxy.start(endpoint);
  const creds = s3Flags(proxy.url, ...keys);
  const cleanup = (): void => {
    creds.cleanup();
    p.cleanup();
  };
  return proxiedFixture({ ...p, flags: { store: S3_STORE, ...creds.base }, api: 's3', proxy, cleanup });
}

export async function s3Fixture(): Promise<StoreFixture> {
  const server = await S3Server.start([S3_BUCKET]);
  return proxiedS3Fixture(server.endpoint, ['S3RVER', 'S3RVER'], {
    provider: 's3 (s3rver)',
    server,
    async corrupt(name) {
      const path = server.objectFile(S3_BUCKET, `backups/main/${name}`);
      flipByteInFile(path, Math.floor(statSync(path).size / 2));
    },
    // S3Server.stop removes its folder.
    cleanup: () => {},
  });
}

/** moto's S3 server (Python, in this machine kind's image); the S3 cases run against it too. */
export async function motoFixture(): Promise<StoreFixture> {
  const port = await freePort();
  // Its per-request log is not read: a pipe nobody drains would block it.
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const kill = (): void => void child.kill('SIGKILL');
  process.once('exit', kill);
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await fetch(`${endpoint}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('moto_server did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
  await createS3Bucket(endpoint, 'testing', 'testing');
  const { base, cleanup } = s3Flags(endpoint, 'testing', 'testing');
  return {
    provider: 's3 (moto_server)',
    flags: { store: S3_STORE, ...base },
    open: (flags = {}) => openStore(configFor({ store: S3_STORE, ...base, ...flags })),
    unreachableFlags: async () => ({ 's3-endpoint': `http://127.0.0.1:${await freePort()}` }),
    endpointFlags: (url) => ({ 's3-endpoint': url }),
    missingBucketFlags: { store: 's3://no-such-bucket-here/x' },
    async stop() {
      process.removeListener('exit', kill);
      child.kill('SIGKILL');
      cleanup();
    },
  };
}

/** Whether moto's S3 server is on the PATH (it is in this machine kind's image). */
export function hasMotoServer(): boolean {
  return (process.env['PATH'] ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, 'moto_server')));
}

/** A TCP endpoint that accepts connections and never answers: a black hole, as a frozen server is. */
export async function blackHole(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `size` random bytes as a stream, never all in memory, with their sha256 known once read. */
export function randomStream(size: number, chunk = 1 << 20): { stream: Readable; sha256: () => string } {
  const hash = createHash('sha256');
  let left = size;
  const stream = new Readable({
    read() {
      if (left === 0) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, left);
      left -= n;
      const b = randomBytes(n);
      hash.update(b);
      this.push(b);
    },
  });
  return { stream, sha256: () => hash.digest('hex') };
}

/** A stream that delivers `goodBytes` and then neither ends nor fails: an upload of it is in flight until aborted. */
export function stallingStream(goodBytes: number): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) this.push(randomBytes(goodBytes));
      sent = true;
    },
  });
}

/** A stream that delivers `goodBytes` and then fails, like a snapshot whose source died. */
export function failingStream(goodBytes: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= goodBytes) {
        this.destroy(new Error('source failed halfway'));
        return;
      }
      const n = Math.min(1 << 20, goodBytes - sent);
      sent += n;
      this.push(randomBytes(n));
    },
  });
}

export async function sha256Of(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}
