/**
 * Restore bench: a full snapshot of a real etcd holding `--full-mb` MB plus `--revisions` delta
 * revisions (single puts of new keys and overwrites, deletes, and multi-key transactions mixing
 * both), restored by the product with its temporary etcd on disk and on tmpfs (/dev/shm), once per
 * replay window in `--windows`; compared with `etcdctl snapshot restore` of the same full snapshot,
 * and with the rate at which the same kind of temporary etcd accepts sequential single-put
 * transactions from a bare client. Peak RSS of the restoring process and of its temporary etcd
 * (VmHWM, sampled from /proc while it runs).
 *
 *   npm run build && tsx bench/restore.ts [--full-mb 256] [--revisions 100000] [--value-bytes 100]
 *     [--per-delta 1000] [--baseline-txns 15000] [--windows 16] [--scratch disk,tmpfs]
 *     [--dist dist,/other/build/dist] [--prefetch-bytes N] [--out bench/results/restore.txt]
 * Large deltas: --value-bytes 10000 --per-delta 2500 makes deltas of ~33 MiB of JSON each. --dist
 * restores the same chain with each build given (e.g. the previous commit's, built elsewhere).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { snapshotRestore } from '../src/etcd/etcdctl.js';
import { EtcdProcess } from '../src/etcd/process.js';
import { openSnapshotStream } from '../src/etcd/snapshot-stream.js';
import { freeLoopbackPort, TemporaryEtcd } from '../src/etcd/temporary.js';
import { createLogger } from '../src/logger.js';
import { compressBuffer, decompressStream } from '../src/snapshot/compression.js';
import { DeltaBuilder, type DeltaEvent } from '../src/snapshot/delta-format.js';
import { takeFullSnapshot } from '../src/snapshot/full.js';
import { snapshotName } from '../src/snapshot/names.js';
import { LocalStore } from '../src/snapstore/local.js';

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
const WINDOWS = strFlag('windows', '16').split(',').map(Number);
const SCRATCHES = strFlag('scratch', 'disk,tmpfs').split(',');
const DISTS = strFlag('dist', 'dist').split(',');
/** --restore-prefetch-bytes of the restore; 0: its default. */
const PREFETCH_BYTES = flag('prefetch-bytes', 0);
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
    name: 'src',
    dataDir: join(root, 'src'),
    listenClientUrls: [clientURL],
    advertiseClientUrls: [clientURL],
    listenPeerUrls: [peerURL],
    initialAdvertisePeerUrls: [peerURL],
    initialCluster: `src=${peerURL}`,
    initialClusterState: 'new',
    initialClusterToken: 'src',
    logFile: join(root, 'src.log'),
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

/** Delta keys live in the model: key index -> create revision and version, to write exact events. */
const live = new Map<number, { create: number; version: number }>();
const KEYSPACE = 10_000;

function pick(): number {
  return Math.floor(Math.random() * KEYSPACE);
}

/** The events of revision r: 70% one put (new key or overwrite), 15% one delete, 15% a transaction of 2-6 keys. */
function revisionEvents(r: number, time: string): DeltaEvent[] {
  const put = (k: number): DeltaEvent => {
    const was = live.get(k);
    const now = { create: was?.create ?? r, version: (was?.version ?? 0) + 1 };
    live.set(k, now);
    return { type: 'put', kv: { key: Buffer.from(`/delta/${k}`), value: randomBytes(VALUE_BYTES), createRevision: now.create, modRevision: r, version: now.version, lease: '0' }, time };
  };
  const del = (k: number): DeltaEvent => {
    live.delete(k);
    return { type: 'delete', kv: { key: Buffer.from(`/delta/${k}`), value: Buffer.alloc(0), createRevision: 0, modRevision: r, version: 0, lease: '0' }, time };
  };
  const dice = Math.random();
  if (dice < 0.7 || live.size === 0) return [put(pick())];
  if (dice < 0.85) return [del(live.keys().next().value as number)];
  const keys = new Set<number>();
  const n = 2 + Math.floor(Math.random() * 5);
  while (keys.size < n) keys.add(pick());
  return [...keys].map((k) => (live.has(k) && Math.random() < 0.4 ? del(k) : put(k)));
}

async function makeDeltas(after: number): Promise<{ objects: number; events: number; kinds: Record<string, number>; meanDeltaMiB: number; meanStoredMiB: number }> {
  let rev = after;
  const t = Math.floor(Date.now() / 1000);
  let objects = 0;
  let events = 0;
  let jsonBytes = 0;
  let storedBytes = 0;
  const kinds: Record<string, number> = { put: 0, delete: 0, multiKey: 0 };
  while (rev < after + REVISIONS) {
    const b = new DeltaBuilder();
    const start = rev + 1;
    const end = Math.min(after + REVISIONS, rev + PER_DELTA);
    const time = new Date().toISOString();
    for (let r = start; r <= end; r++) {
      const evs = revisionEvents(r, time);
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

function statusOf(pid: number | string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined; // gone between the listing and the read
  }
}
const kB = (status: string | undefined, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status ?? '')?.[1] ?? 0);

/**
 * Peak RSS (VmHWM, MiB) of every etcd the process `parent` started, and the peak of the container's
 * total: the parent's RSS plus its etcds' at the same instant (VmRSS), sampled until stop().
 */
function sampleEtcdPeak(parent: number): { stop(): { etcd: number; total: number } } {
  const peaks = new Map<number, number>();
  let total = 0;
  const sample = (): void => {
    let now = kB(statusOf(parent), 'VmRSS');
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const status = statusOf(name);
      if (!status || !/^Name:\s+etcd$/m.test(status) || Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== parent) continue;
      peaks.set(Number(name), Math.max(peaks.get(Number(name)) ?? 0, kB(status, 'VmHWM')));
      now += kB(status, 'VmRSS');
    }
    total = Math.max(total, now);
  };
  const timer = setInterval(sample, 200);
  return {
    stop: () => {
      clearInterval(timer);
      return { etcd: Math.round(Math.max(0, ...peaks.values()) / 1024), total: Math.round(total / 1024) };
    },
  };
}

interface ChildResult {
  seconds: number;
  peakRssMiB: number;
  etcdPeakRssMiB: number;
  containerPeakRssMiB: number;
  result: { revision: number; timings: { fetchFullMs: number; restoreFullMs: number; replayMs: number; finalizeMs: number } };
}

async function restoreChild(scratch: string, window: number, dist: string): Promise<ChildResult> {
  const dataDir = join(root, `restored-${scratch === shmRoot ? 'shm' : 'disk'}-${window}`, 'data');
  const peerURL = `http://127.0.0.1:${await freeLoopbackPort()}`;
  const child = spawn(
    process.execPath,
    ['bench/restore-child.mjs', JSON.stringify({ storeDir, dataDir, scratchDir: scratch, peerURL, replayWindow: window, dist: resolve(dist), prefetchBytes: PREFETCH_BYTES })],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const etcdPeak = sampleEtcdPeak(child.pid as number);
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const peaks = etcdPeak.stop();
  if (code !== 0) throw new Error(`the restore child exited with ${code}`);
  rmSync(dataDir, { recursive: true, force: true });
  return { ...(JSON.parse(stdout.trim().split('\n').at(-1) as string) as Omit<ChildResult, 'etcdPeakRssMiB' | 'containerPeakRssMiB'>), etcdPeakRssMiB: peaks.etcd, containerPeakRssMiB: peaks.total };
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
  console.error(`full ${full.name} (${(full.dbBytes / 1e6).toFixed(0)} MB db), ${deltas.objects} deltas; measuring`);
  const etcdctlSeconds = await etcdctlRestore(full.file);
  const rows: Record<string, unknown>[] = [];
  const scratches = (
    [
      ['disk', diskScratch],
      ['tmpfs /dev/shm', shmRoot],
    ] as const
  ).filter(([label]) => SCRATCHES.includes(label.split(' ')[0] as string));
  for (const [label, scratch] of scratches) {
    for (const window of WINDOWS)
      for (const dist of DISTS) {
        // The machine is shared: the bare rate is taken right before and right after the restore, and
        // their mean is the reference, so a load change during the run cannot favour either side.
        const bareBefore = await baseline(full.file, scratch);
        const r = await restoreChild(scratch, window, dist);
        const bareAfter = await baseline(full.file, scratch);
        const bare = (bareBefore + bareAfter) / 2;
        const replayRate = REVISIONS / (r.result.timings.replayMs / 1000);
        rows.push({
          scratch: label,
          window,
          dist,
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
          etcdPeakRssMiB: r.etcdPeakRssMiB,
          containerPeakRssMiB: r.containerPeakRssMiB,
          revision: r.result.revision,
        });
        console.error(
          `${label}, window ${window}, ${dist}: ${replayRate.toFixed(0)} rev/s, bare ${bare.toFixed(0)}/s, sidecar peak ${r.peakRssMiB} MiB, etcd ${r.etcdPeakRssMiB} MiB, container ${r.containerPeakRssMiB} MiB`,
        );
      }
  }
  const head = `# npm run build && tsx bench/restore.ts --full-mb ${FULL_MB} --revisions ${REVISIONS} --value-bytes ${VALUE_BYTES} --per-delta ${PER_DELTA} --baseline-txns ${BASELINE_TXNS} --windows ${WINDOWS.join(',')} --scratch ${SCRATCHES.join(',')} --dist ${DISTS.join(',')}${PREFETCH_BYTES ? ` --prefetch-bytes ${PREFETCH_BYTES}` : ''}, ${new Date().toISOString().slice(0, 10)}, etcd 3.4.23, 2 cores shared with other jobs`;
  const lines = [
    head,
    '',
    `full snapshot: ${(full.dbBytes / 1e6).toFixed(0)} MB db at revision ${full.revision}; deltas: ${REVISIONS} revisions (${deltas.kinds['put']} single puts, ${deltas.kinds['delete']} single deletes, ${deltas.kinds['multiKey']} multi-key transactions; ${deltas.events} events) in ${deltas.objects} objects (gzip; each ${deltas.meanDeltaMiB.toFixed(1)} MiB of JSON, ${deltas.meanStoredMiB.toFixed(1)} MiB stored); etcdctl snapshot restore of the same file: ${etcdctlSeconds.toFixed(2)} s`,
    '',
    'scratch         window  build  total s  fetch full s  full restore s  replay s  finalize s  replay rev/s  bare 1-put txn/s (before/after)  ratio  sidecar peak RSS MiB  temp etcd peak RSS MiB  container peak RSS MiB',
  ];
  for (const r of rows) {
    const n = (k: string, d = 2): string => (r[k] as number).toFixed(d);
    lines.push(
      `${String(r.scratch).padEnd(15)}  ${String(r.window).padStart(6)}  ${String(r.dist)}  ${n('totalSeconds').padStart(7)}  ${n('fetchFullSeconds').padStart(12)}  ${n('fullRestoreSeconds').padStart(14)}  ${n('replaySeconds').padStart(8)}  ${n('finalizeSeconds').padStart(10)}  ${n('replayRevisionsPerSecond', 0).padStart(12)}  ${`${n('bareSinglePutTxnsPerSecond', 0)} (${n('bareBefore', 0)}/${n('bareAfter', 0)})`.padStart(31)}  ${n('replayToBareRatio').padStart(5)}  ${String(r.peakRssMiB).padStart(20)}  ${String(r.etcdPeakRssMiB).padStart(22)}  ${String(r.containerPeakRssMiB).padStart(22)}`,
    );
  }
  lines.push(
    '',
    'ratio = replay rev/s / bare 1-put txn/s: the bare rate is one client sending one single-put transaction at a time to the same kind of temporary etcd (same flags, --unsafe-no-fsync included, same db, same scratch), measured right before and right after the restore.',
    "container peak = the highest sum of the restoring process's and its temporary etcd's RSS at one sampling instant (every 200 ms); the other two peaks are each process's own VmHWM.",
    "full restore = etcdctl snapshot restore into the scratch dir + temporary etcd start + lease listing; finalize = temporary etcd stop, db check, second etcdctl snapshot restore with the member's identity, fsync of the restored data dir, atomic swap.",
  );
  lines.push(JSON.stringify({ fullMB: full.dbBytes / 1e6, fullRevision: full.revision, revisions: REVISIONS, deltas, etcdctlRestoreSeconds: etcdctlSeconds, rows }));
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(OUT, text);
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(shmRoot, { recursive: true, force: true });
}
