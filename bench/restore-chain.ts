/**
 * The restore bench's chain: a full snapshot of a real etcd holding `fullMB` MB plus `revisions`
 * delta revisions (single puts of new keys and overwrites, deletes, multi-key transactions), in a
 * local store laid out as gardener's `Local` provider reads it (`<home>/<container>/<prefix>/v2/`).
 * Building one at the size takes minutes, so it is kept in a folder named after its
 * parameters and reused by later runs; it is only ever renamed into place once complete.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Etcd3 } from 'etcd3';
import { EtcdProcess } from '../src/etcd/process.js';
import { openSnapshotStream } from '../src/etcd/snapshot-stream.js';
import { freeLoopbackPort } from '../src/etcd/temporary.js';
import { compressBuffer, decompressStream } from '../src/snapshot/compression.js';
import { DeltaBuilder, type DeltaEvent } from '../src/snapshot/delta-format.js';
import { takeFullSnapshot } from '../src/snapshot/full.js';
import { snapshotName } from '../src/snapshot/names.js';
import { LocalStore } from '../src/snapstore/local.js';
import { loneMember } from '../test/helpers/replay.js';

export interface ChainParams {
  fullMB: number;
  revisions: number;
  valueBytes: number;
  perDelta: number;
}

/** gardener's store flags name `$HOME/<container>/<prefix>`. */
export const GARDENER_CONTAINER = 'store';
export const GARDENER_PREFIX = 'etcd-main';

export interface BenchChain {
  /** gardener's HOME: the store is `<home>/store/etcd-main`. */
  home: string;
  storeDir: string;
  /** The full snapshot's db, uncompressed, for etcdctl and the bare-rate baseline. */
  fullFile: string;
  fullName: string;
  fullRevision: number;
  fullDbBytes: number;
  lastRevision: number;
  deltas: { objects: number; events: number; kinds: Record<string, number>; meanDeltaMiB: number; meanStoredMiB: number };
  buildSeconds: number;
  /** False when this run built it. */
  cached: boolean;
}

const DESCRIPTION = 'chain.json';

/** The chain for `p` under `workDir`, built there first unless a previous run left it complete. */
export async function benchChain(workDir: string, p: ChainParams, say: (line: string) => void): Promise<BenchChain> {
  const dir = join(workDir, `chain-full${p.fullMB}mb-rev${p.revisions}-value${p.valueBytes}-per${p.perDelta}`);
  if (existsSync(join(dir, DESCRIPTION))) {
    const chain = JSON.parse(readFileSync(join(dir, DESCRIPTION), 'utf8')) as Omit<BenchChain, 'home' | 'storeDir' | 'fullFile' | 'cached'>;
    say(`reusing the chain in ${dir} (built in ${chain.buildSeconds.toFixed(0)} s)`);
    return { ...chain, ...paths(dir), cached: true };
  }
  const building = `${dir}.building`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(join(building, GARDENER_CONTAINER, GARDENER_PREFIX), { recursive: true });
  say(`building a ${p.fullMB} MB full snapshot and ${p.revisions} delta revisions in ${building}`);
  const t = performance.now();
  const { storeDir, fullFile } = paths(building);
  const store = new LocalStore(storeDir);
  const full = await makeFull(store, building, fullFile, p.fullMB);
  const deltas = await makeDeltas(store, full.revision, p);
  const buildSeconds = (performance.now() - t) / 1000;
  const chain = { fullName: full.name, fullRevision: full.revision, fullDbBytes: full.dbBytes, lastRevision: full.revision + p.revisions, deltas, buildSeconds };
  writeFileSync(join(building, DESCRIPTION), JSON.stringify(chain));
  renameSync(building, dir);
  say(`built the chain in ${buildSeconds.toFixed(0)} s`);
  return { ...chain, ...paths(dir), cached: false };
}

function paths(dir: string): Pick<BenchChain, 'home' | 'storeDir' | 'fullFile'> {
  return { home: dir, storeDir: join(dir, GARDENER_CONTAINER, GARDENER_PREFIX), fullFile: join(dir, 'full.db') };
}

async function makeFull(store: LocalStore, work: string, fullFile: string, fullMB: number): Promise<{ revision: number; dbBytes: number; name: string }> {
  const [c, p] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const clientURL = `http://127.0.0.1:${c}`;
  const peerURL = `http://127.0.0.1:${p}`;
  const etcd = new EtcdProcess({
    ...loneMember({ name: 'src', dataDir: join(work, 'src'), clientURL, peerURL, token: 'src', logFile: join(work, 'src.log') }),
    extraArgs: ['--max-request-bytes=8388608', '--quota-backend-bytes=17179869184'],
  });
  etcd.start();
  const client = new Etcd3({ hosts: [clientURL], grpcOptions: { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 } });
  try {
    for (let i = 0; ; i++) {
      try {
        await client.maintenance.status();
        break;
      } catch {
        if (i > 200) throw new Error('source etcd did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // Half random, half repeated bytes: compresses about 2:1, like real objects.
    const value = (n: number): Buffer => Buffer.concat([randomBytes(n / 2), Buffer.alloc(n / 2, 97)]);
    const chunk = 512 * 1024;
    for (let i = 0; i < (fullMB * 1024 * 1024) / chunk; i++) await client.put(`/full/${String(i).padStart(6, '0')}`).value(value(chunk));
    const full = await takeFullSnapshot(store, { open: () => openSnapshotStream(client), member: 'src' }, { compression: 'gzip', compressionLevel: 1, spoolDir: work });
    await pipeline(await store.get(full.name), decompressStream('gzip'), createWriteStream(fullFile));
    return { revision: full.lastRevision, dbBytes: full.uncompressedSize, name: full.name };
  } finally {
    client.close();
    await etcd.stop();
    rmSync(join(work, 'src'), { recursive: true, force: true });
  }
}

const KEYSPACE = 10_000;

/** Keys of the deltas, as the model that writes exact events sees them: key index -> create revision and version. */
class Keyspace {
  private readonly live = new Map<number, { create: number; version: number }>();

  constructor(private readonly valueBytes: number) {}

  /** The events of revision r: 70% one put (new key or overwrite), 15% one delete, 15% a transaction of 2-6 keys. */
  revision(r: number, time: string): DeltaEvent[] {
    const put = (k: number): DeltaEvent => {
      const was = this.live.get(k);
      const now = { create: was?.create ?? r, version: (was?.version ?? 0) + 1 };
      this.live.set(k, now);
      return { type: 'put', kv: { key: Buffer.from(`/delta/${k}`), value: randomBytes(this.valueBytes), createRevision: now.create, modRevision: r, version: now.version, lease: '0' }, time };
    };
    const del = (k: number): DeltaEvent => {
      this.live.delete(k);
      return { type: 'delete', kv: { key: Buffer.from(`/delta/${k}`), value: Buffer.alloc(0), createRevision: 0, modRevision: r, version: 0, lease: '0' }, time };
    };
    const pick = (): number => Math.floor(Math.random() * KEYSPACE);
    const dice = Math.random();
    if (dice < 0.7 || this.live.size === 0) return [put(pick())];
    if (dice < 0.85) return [del(this.live.keys().next().value as number)];
    const keys = new Set<number>();
    const n = 2 + Math.floor(Math.random() * 5);
    while (keys.size < n) keys.add(pick());
    return [...keys].map((k) => (this.live.has(k) && Math.random() < 0.4 ? del(k) : put(k)));
  }
}

async function makeDeltas(store: LocalStore, after: number, p: ChainParams): Promise<BenchChain['deltas']> {
  const keys = new Keyspace(p.valueBytes);
  let rev = after;
  const t = Math.floor(Date.now() / 1000);
  let objects = 0;
  let events = 0;
  let jsonBytes = 0;
  let storedBytes = 0;
  const kinds: Record<string, number> = { put: 0, delete: 0, multiKey: 0 };
  while (rev < after + p.revisions) {
    const b = new DeltaBuilder();
    const start = rev + 1;
    const end = Math.min(after + p.revisions, rev + p.perDelta);
    const time = new Date().toISOString();
    for (let r = start; r <= end; r++) {
      const evs = keys.revision(r, time);
      if (evs.length > 1) kinds['multiKey']!++;
      else kinds[evs[0]!.type]!++;
      for (const ev of evs) b.add(ev);
      events += evs.length;
    }
    const payload = Buffer.concat(b.finish());
    jsonBytes += payload.length;
    const body = await compressBuffer('gzip', payload, 1);
    storedBytes += body.length;
    await store.put(snapshotName({ kind: 'delta', startRevision: start, lastRevision: end, createdAt: new Date((t + objects) * 1000), compression: 'gzip' }), Readable.from([body]));
    objects++;
    rev = end;
  }
  return { objects, events, kinds, meanDeltaMiB: jsonBytes / objects / 2 ** 20, meanStoredMiB: storedBytes / objects / 2 ** 20 };
}
