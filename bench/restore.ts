/**
 * Restore bench: a full snapshot of a real etcd holding `--full-mb` MB plus `--revisions` delta
 * revisions, restored by the product with its temporary etcd on disk and on tmpfs (/dev/shm);
 * compared with `etcdctl snapshot restore` of the same full snapshot, and with the rate at which
 * the same kind of temporary etcd accepts sequential single-put transactions from a bare client.
 *
 *   npm run build && tsx bench/restore.ts [--full-mb 256] [--revisions 100000] [--value-bytes 100]
 *     [--per-delta 1000] [--baseline-txns 15000] [--out bench/results/restore.txt]
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { snapshotRestore } from '../src/etcd/etcdctl.js';
import { EtcdProcess } from '../src/etcd/process.js';
import { openSnapshotStream } from '../src/etcd/snapshot-stream.js';
import { freeLoopbackPort, TemporaryEtcd } from '../src/etcd/temporary.js';
import { createLogger } from '../src/logger.js';
import { compressBuffer, decompressStream } from '../src/snapshot/compression.js';
import { DeltaBuilder } from '../src/snapshot/delta.js';
import { takeFullSnapshot } from '../src/snapshot/full.js';
import { snapshotName } from '../src/snapshot/names.js';
import { LocalStore } from '../src/snapstore/local.js';

const run = promisify(execFile);

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
function strFlag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] as string) : def;
}

const FULL_MB = flag('full-mb', 256);
const REVISIONS = flag('revisions', 100_000);
const VALUE_BYTES = flag('value-bytes', 100);
const PER_DELTA = flag('per-delta', 1000);
const BASELINE_TXNS = flag('baseline-txns', 15_000);
const OUT = strFlag('out', 'bench/results/restore.txt');
const log = createLogger('warn');

const root = mkdtempSync(join(tmpdir(), 'ebs-bench-restore-'));
const shmRoot = mkdtempSync(join('/dev/shm', 'ebs-bench-restore-'));
const storeDir = join(root, 'store');
const store = new LocalStore(storeDir);

async function makeFull(): Promise<{ revision: number; dbBytes: number; name: string; file: string }> {
  const [c, p] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const clientURL = `http://127.0.0.1:${c}`;
  const peerURL = `http://127.0.0.1:${p}`;
  const etcd = new EtcdProcess({
    name: 'src', dataDir: join(root, 'src'), listenClientUrls: [clientURL], advertiseClientUrls: [clientURL], listenPeerUrls: [peerURL], initialAdvertisePeerUrls: [peerURL],
    initialCluster: `src=${peerURL}`, initialClusterState: 'new', initialClusterToken: 'src', logFile: join(root, 'src.log'),
    extraArgs: ['--max-request-bytes=8388608', '--quota-backend-bytes=17179869184'],
  });
  etcd.start();
  const client = new Etcd3({ hosts: [clientURL], grpcOptions: { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 } });
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
  for (let i = 0; i < (FULL_MB * 1024 * 1024) / chunk; i++) await client.put(`/full/${String(i).padStart(6, '0')}`).value(value(chunk));
  const full = await takeFullSnapshot(store, { open: () => openSnapshotStream(client), member: 'src' }, { compression: 'gzip', compressionLevel: 1, spoolDir: root });
  client.close();
  await etcd.stop();
  const file = join(root, 'full.db');
  await pipeline(await store.get(full.name), decompressStream('gzip'), createWriteStream(file));
  return { revision: full.lastRevision, dbBytes: full.uncompressedSize, name: full.name, file };
}

async function makeDeltas(after: number): Promise<number> {
  let rev = after;
  const t = Math.floor(Date.now() / 1000);
  let objects = 0;
  while (rev < after + REVISIONS) {
    const b = new DeltaBuilder();
    const start = rev + 1;
    const end = Math.min(after + REVISIONS, rev + PER_DELTA);
    for (let r = start; r <= end; r++) {
      const k = r % 10_000;
      b.add({ type: 'put', kv: { key: Buffer.from(`/delta/${k}`), value: randomBytes(VALUE_BYTES), createRevision: r, modRevision: r, version: 1, lease: '0' }, time: new Date().toISOString() });
    }
    const body = await compressBuffer('gzip', Buffer.concat(b.finish()), 1);
    await store.put(snapshotName({ kind: 'delta', startRevision: start, lastRevision: end, createdAt: new Date((t + objects) * 1000), compression: 'gzip' }), Readable.from([body]));
    objects++;
    rev = end;
  }
  return objects;
}

/** The same temporary etcd (flags, db, scratch) taking sequential one-put transactions from a bare client. */
async function baseline(fullFile: string, scratch: string): Promise<number> {
  const dir = mkdtempSync(join(scratch, 'baseline-'));
  const peerPort = await freeLoopbackPort();
  const peerURL = `http://127.0.0.1:${peerPort}`;
  await snapshotRestore({ file: fullFile, dataDir: join(dir, 'data'), name: 'base', initialCluster: `base=${peerURL}`, initialClusterToken: 'base', initialAdvertisePeerUrls: [peerURL] });
  const temp = await TemporaryEtcd.start({ dataDir: join(dir, 'data'), name: 'base', peerPort, logFile: join(dir, 'etcd.log'), log });
  try {
    const t = performance.now();
    for (let i = 0; i < BASELINE_TXNS; i++) await temp.txn([{ request_put: { key: Buffer.from(`/delta/${i % 10_000}`), value: randomBytes(VALUE_BYTES) } }]);
    return BASELINE_TXNS / ((performance.now() - t) / 1000);
  } finally {
    await temp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function restoreChild(scratch: string): Promise<{ seconds: number; peakRssMiB: number; result: { revision: number; timings: { fetchFullMs: number; restoreFullMs: number; replayMs: number; finalizeMs: number } } }> {
  const dataDir = join(scratch === shmRoot ? root : root, `restored-${scratch === shmRoot ? 'shm' : 'disk'}`, 'data');
  const peerURL = `http://127.0.0.1:${await freeLoopbackPort()}`;
  const { stdout } = await run(process.execPath, ['bench/restore-child.mjs', JSON.stringify({ storeDir, dataDir, scratchDir: scratch, peerURL })], { maxBuffer: 1 << 20 });
  rmSync(dataDir, { recursive: true, force: true });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string);
}

async function etcdctlRestore(file: string): Promise<number> {
  const peer = 'http://127.0.0.1:2380';
  const dir = join(root, 'etcdctl-restore');
  const t = performance.now();
  await snapshotRestore({ file, dataDir: dir, name: 'x', initialCluster: `x=${peer}`, initialClusterToken: 'x', initialAdvertisePeerUrls: [peer] });
  const s = (performance.now() - t) / 1000;
  rmSync(dir, { recursive: true, force: true });
  return s;
}

try {
  const diskScratch = join(root, 'scratch');
  mkdirSync(diskScratch);
  console.error(`building a ${FULL_MB} MB full snapshot and ${REVISIONS} delta revisions in ${root}`);
  const full = await makeFull();
  const deltas = await makeDeltas(full.revision);
  console.error(`full ${full.name} (${(full.dbBytes / 1e6).toFixed(0)} MB db), ${deltas} deltas; measuring`);
  const etcdctlSeconds = await etcdctlRestore(full.file);
  const rows: Record<string, unknown>[] = [];
  for (const [label, scratch] of [['disk', diskScratch], ['tmpfs /dev/shm', shmRoot]] as const) {
    // The machine is shared: the bare rate is taken right before and right after the restore, and
    // their mean is the reference, so a load change during the run cannot favour either side.
    const bareBefore = await baseline(full.file, scratch);
    const r = await restoreChild(scratch);
    const bareAfter = await baseline(full.file, scratch);
    const bare = (bareBefore + bareAfter) / 2;
    const replayRate = REVISIONS / (r.result.timings.replayMs / 1000);
    rows.push({
      scratch: label,
      totalSeconds: r.seconds,
      fetchFullSeconds: r.result.timings.fetchFullMs / 1000,
      fullRestoreSeconds: r.result.timings.restoreFullMs / 1000,
      replaySeconds: r.result.timings.replayMs / 1000,
      finalizeSeconds: r.result.timings.finalizeMs / 1000,
      replayRevisionsPerSecond: replayRate,
      bareSinglePutTxnsPerSecond: bare,
      bareBefore,
      bareAfter,
      replayToBareRatio: replayRate / bare,
      peakRssMiB: r.peakRssMiB,
      revision: r.result.revision,
    });
  }
  const head = `# npm run build && tsx bench/restore.ts --full-mb ${FULL_MB} --revisions ${REVISIONS} --value-bytes ${VALUE_BYTES} --per-delta ${PER_DELTA} --baseline-txns ${BASELINE_TXNS}, ${new Date().toISOString().slice(0, 10)}, etcd 3.4.23, 2 cores shared with other jobs`;
  const lines = [
    head,
    '',
    `full snapshot: ${(full.dbBytes / 1e6).toFixed(0)} MB db at revision ${full.revision}; deltas: ${REVISIONS} revisions in ${deltas} objects (gzip); etcdctl snapshot restore of the same file: ${etcdctlSeconds.toFixed(2)} s`,
    '',
    'scratch          total s  fetch full s  full restore s  etcdctl restore s  replay s  finalize s  replay rev/s  bare 1-put txn/s (before/after)  ratio  peak RSS MiB',
  ];
  for (const r of rows) {
    const n = (k: string, d = 2): string => (r[k] as number).toFixed(d);
    lines.push(
      `${String(r.scratch).padEnd(15)}  ${n('totalSeconds').padStart(7)}  ${n('fetchFullSeconds').padStart(12)}  ${n('fullRestoreSeconds').padStart(14)}  ${etcdctlSeconds.toFixed(2).padStart(17)}  ${n('replaySeconds').padStart(8)}  ${n('finalizeSeconds').padStart(10)}  ${n('replayRevisionsPerSecond', 0).padStart(12)}  ${`${n('bareSinglePutTxnsPerSecond', 0)} (${n('bareBefore', 0)}/${n('bareAfter', 0)})`.padStart(31)}  ${n('replayToBareRatio').padStart(5)}  ${String(r.peakRssMiB).padStart(12)}`,
    );
  }
  lines.push('', 'full restore = etcdctl snapshot restore into the scratch dir + temporary etcd start + lease listing; finalize = temporary etcd stop, db check, second etcdctl snapshot restore with the member\'s identity, atomic swap.');
  lines.push(JSON.stringify({ fullMB: full.dbBytes / 1e6, fullRevision: full.revision, revisions: REVISIONS, deltas, etcdctlRestoreSeconds: etcdctlSeconds, rows }));
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(OUT, text);
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(shmRoot, { recursive: true, force: true });
}
