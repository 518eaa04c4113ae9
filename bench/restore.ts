/**
 * Restore bench: a full snapshot of a real etcd holding `--full-mb` MB plus `--revisions` delta
 * revisions (single puts of new keys and overwrites, deletes, and multi-key transactions mixing
 * both), restored by the product with its temporary etcd on disk and on tmpfs (/dev/shm), once per
 * replay window in `--windows`; compared with `etcdctl snapshot restore` of the same full snapshot,
 * with the rate at which the same kind of temporary etcd accepts sequential single-put transactions
 * from a bare client, and with gardener's `etcdbrctl restore` of the same chain into a data dir on
 * disk. Peak RSS of the restoring process, of its temporary etcd, and of etcdbrctl (VmHWM, sampled
 * from /proc while they run). Both restores are then started with etcd 3.5 and compared: revision,
 * live key count, a digest of every live key (restored-keyspace.ts).
 *
 *   npm run build && tsx bench/restore.ts [--full-mb 256] [--revisions 100000] [--value-bytes 100]
 *     [--per-delta 1000] [--baseline-txns 15000] [--windows 16] [--scratch disk,tmpfs]
 *     [--dist dist,/other/build/dist] [--prefetch-bytes N] [--out bench/results/restore.txt]
 *     [--work $TMPDIR/ebs-bench-restore] [--gardener .peers/etcdbrctl/etcdbrctl | none]
 * The chain is kept in `--work`, in a folder named after its parameters, and reused by later runs.
 * The restore's etcd is PATH's (put .peers/etcd-v3.5 first for the etcd gardener embeds).
 * Large deltas: --value-bytes 10000 --per-delta 2500 makes deltas of ~33 MiB of JSON each. --dist
 * restores the same chain with each build given (e.g. the previous commit's, built elsewhere).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { snapshotRestore } from '../src/etcd/etcdctl.js';
import { freeLoopbackPort, TemporaryEtcd } from '../src/etcd/temporary.js';
import { etcdTools, etcdVersion } from '../src/etcd/tools.js';
import { SIDECAR_NODE_FLAGS } from '../src/launcher/node-flags.js';
import { createLogger } from '../src/logger.js';
import { samplePeaks } from './proc-peak.js';
import { benchChain } from './restore-chain.js';
import { gardenerRestore, type GardenerRun } from './restore-gardener.js';
import { restoredKeyspace, type RestoredKeyspace } from './restored-keyspace.js';

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
const WORK = strFlag('work', join(tmpdir(), 'ebs-bench-restore'));
const GARDENER = strFlag('gardener', '.peers/etcdbrctl/etcdbrctl');
/** Reads both restored data dirs: gardener's embedded etcd marks its own 3.5, which 3.4 refuses. */
const CHECK_ETCD = resolve('.peers/etcd-v3.5/etcd');
const log = createLogger('warn');

const root = mkdtempSync(join(tmpdir(), 'ebs-bench-restore-run-'));
const shmRoot = mkdtempSync(join('/dev/shm', 'ebs-bench-restore-'));

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

interface ChildResult {
  seconds: number;
  peakRssMiB: number;
  etcdPeakRssMiB: number;
  containerPeakRssMiB: number;
  /** CPU time of the restoring process and of its temporary etcd, seconds. */
  cpuSeconds: number;
  etcdCpuSeconds: number;
  result: { revision: number; timings: { fetchFullMs: number; restoreFullMs: number; replayMs: number; finalizeMs: number } };
  /** The restored member, for the comparison with gardener's: `<dir>/data`. */
  dir: string;
  peerURL: string;
}

async function restoreChild(storeDir: string, scratch: string, window: number, dist: string): Promise<ChildResult> {
  const dir = join(root, `restored-${scratch === shmRoot ? 'shm' : 'disk'}-${window}-${DISTS.indexOf(dist)}`);
  const peerURL = `http://127.0.0.1:${await freeLoopbackPort()}`;
  // With the node flags the image's ENTRYPOINT gives the sidecar, so memory is the product's.
  const child = spawn(
    process.execPath,
    [
      ...SIDECAR_NODE_FLAGS,
      'bench/restore-child.mjs',
      JSON.stringify({ storeDir, dataDir: join(dir, 'data'), scratchDir: scratch, peerURL, replayWindow: window, dist: resolve(dist), prefetchBytes: PREFETCH_BYTES }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const peaks = samplePeaks(child.pid as number, 'etcd');
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const { child: etcd, total, childCpuSeconds } = peaks.stop();
  if (code !== 0) throw new Error(`the restore child exited with ${code}`);
  const measured = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Pick<ChildResult, 'seconds' | 'peakRssMiB' | 'cpuSeconds' | 'result'>;
  return { ...measured, etcdPeakRssMiB: etcd, containerPeakRssMiB: total, etcdCpuSeconds: childCpuSeconds, dir, peerURL };
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

/** gardener's restore of the chain, and both restores read back and compared; undefined without its binary. */
async function gardenerSide(home: string, ours: ChildResult | undefined): Promise<{ run: GardenerRun; ours?: RestoredKeyspace; theirs: RestoredKeyspace } | undefined> {
  if (GARDENER === 'none') return undefined;
  if (!existsSync(GARDENER)) {
    console.error(`gardener's etcdbrctl is missing (${GARDENER}): no gardener column (npm run peers builds it)`);
    return undefined;
  }
  const dir = join(root, 'gardener');
  mkdirSync(dir);
  const run = await gardenerRestore(resolve(GARDENER), home, dir);
  console.error(`gardener: ${run.seconds.toFixed(1)} s, peak RSS ${run.peakRssMiB} MiB; reading both restores back`);
  const theirs = await restoredKeyspace(run.dir, run.name, run.peerURL, CHECK_ETCD);
  return { run, theirs, ...(ours ? { ours: await restoredKeyspace(ours.dir, 'bench', ours.peerURL, CHECK_ETCD) } : {}) };
}

try {
  const diskScratch = join(root, 'scratch');
  mkdirSync(diskScratch);
  const { version } = await etcdVersion(etcdTools());
  const chain = await benchChain(WORK, { fullMB: FULL_MB, revisions: REVISIONS, valueBytes: VALUE_BYTES, perDelta: PER_DELTA }, (line) => console.error(line));
  const { deltas } = chain;
  console.error(`full ${chain.fullName} (${(chain.fullDbBytes / 1e6).toFixed(0)} MB db), ${deltas.objects} deltas; measuring with etcd ${version}`);
  const etcdctlSeconds = await etcdctlRestore(chain.fullFile);
  const rows: Record<string, unknown>[] = [];
  /** Our first restore on disk: the one compared with gardener's, same data-dir kind. */
  let oursOnDisk: ChildResult | undefined;
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
        const bareBefore = await baseline(chain.fullFile, scratch);
        const r = await restoreChild(chain.storeDir, scratch, window, dist);
        const bareAfter = await baseline(chain.fullFile, scratch);
        if (!oursOnDisk && label === 'disk') oursOnDisk = r;
        else rmSync(r.dir, { recursive: true, force: true });
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
          cpuSeconds: r.cpuSeconds,
          etcdCpuSeconds: r.etcdCpuSeconds,
          revision: r.result.revision,
        });
        console.error(
          `${label}, window ${window}, ${dist}: ${replayRate.toFixed(0)} rev/s, bare ${bare.toFixed(0)}/s, sidecar peak ${r.peakRssMiB} MiB, etcd ${r.etcdPeakRssMiB} MiB, container ${r.containerPeakRssMiB} MiB`,
        );
      }
  }
  const gardener = await gardenerSide(chain.home, oursOnDisk);
  const args = `--full-mb ${FULL_MB} --revisions ${REVISIONS} --value-bytes ${VALUE_BYTES} --per-delta ${PER_DELTA} --baseline-txns ${BASELINE_TXNS} --windows ${WINDOWS.join(',')} --scratch ${SCRATCHES.join(',')} --dist ${DISTS.join(',')}${PREFETCH_BYTES ? ` --prefetch-bytes ${PREFETCH_BYTES}` : ''}`;
  const head = `# npm run build && tsx bench/restore.ts ${args}, ${new Date().toISOString().slice(0, 10)}, etcd ${version}, 2 cores shared with other jobs`;
  const lines = [
    head,
    '',
    `full snapshot: ${(chain.fullDbBytes / 1e6).toFixed(0)} MB db at revision ${chain.fullRevision}; deltas: ${REVISIONS} revisions (${deltas.kinds['put']} single puts, ${deltas.kinds['delete']} single deletes, ${deltas.kinds['multiKey']} multi-key transactions; ${deltas.events} events) in ${deltas.objects} objects (gzip; each ${deltas.meanDeltaMiB.toFixed(1)} MiB of JSON, ${deltas.meanStoredMiB.toFixed(1)} MiB stored); chain ${chain.cached ? 'reused, built' : 'built'} in ${chain.buildSeconds.toFixed(0)} s; etcdctl snapshot restore of the full snapshot: ${etcdctlSeconds.toFixed(2)} s`,
    '',
    'scratch         window  build  total s  fetch full s  full restore s  replay s  finalize s  replay rev/s  bare 1-put txn/s (before/after)  ratio  sidecar peak RSS MiB  temp etcd peak RSS MiB  container peak RSS MiB  CPU s sidecar/etcd',
  ];
  for (const r of rows) {
    const n = (k: string, d = 2): string => (r[k] as number).toFixed(d);
    lines.push(
      `${String(r.scratch).padEnd(15)}  ${String(r.window).padStart(6)}  ${String(r.dist)}  ${n('totalSeconds').padStart(7)}  ${n('fetchFullSeconds').padStart(12)}  ${n('fullRestoreSeconds').padStart(14)}  ${n('replaySeconds').padStart(8)}  ${n('finalizeSeconds').padStart(10)}  ${n('replayRevisionsPerSecond', 0).padStart(12)}  ${`${n('bareSinglePutTxnsPerSecond', 0)} (${n('bareBefore', 0)}/${n('bareAfter', 0)})`.padStart(31)}  ${n('replayToBareRatio').padStart(5)}  ${String(r.peakRssMiB).padStart(20)}  ${String(r.etcdPeakRssMiB).padStart(22)}  ${String(r.containerPeakRssMiB).padStart(22)}  ${`${n('cpuSeconds', 1)}/${n('etcdCpuSeconds', 1)}`.padStart(18)}`,
    );
  }
  if (gardener) {
    const { run, ours, theirs } = gardener;
    const rate = run.deltaSeconds
      ? `${(REVISIONS / run.deltaSeconds).toFixed(0)} rev/s over ${run.deltaSeconds.toFixed(2)} s of delta application (from its log)`
      : 'delta application not found in its log';
    lines.push(
      '',
      `gardener etcdbrctl restore, same store and chain, data dir on disk (its etcd embedded, ${run.dir}): total ${run.seconds.toFixed(2)} s, ${rate}, peak RSS ${run.peakRssMiB} MiB, CPU ${run.cpuSeconds.toFixed(1)} s (etcd included in both)`,
    );
    // One line per restore of ours on disk, gardener's scratch: every window compared, not only the first listed.
    for (const r of rows.filter((row) => row['scratch'] === 'disk')) {
      lines.push(`gardener total / ours (disk, window ${String(r['window'])}, ${String(r['dist'])}): ${(run.seconds / (r['totalSeconds'] as number)).toFixed(2)}`);
    }
    const same = ours && ours.revision === theirs.revision && ours.keys === theirs.keys && ours.digest === theirs.digest;
    const history = (k: RestoredKeyspace): string => (k.compactRevision < 0 ? 'whole history kept' : `history compacted to ${k.compactRevision}`);
    const facts = (k: RestoredKeyspace): string => `revision ${k.revision}, ${k.keys} keys, live keyspace sha256 ${k.digest.slice(0, 16)}, ${history(k)}`;
    lines.push(`read back with etcd 3.5: gardener's at ${facts(theirs)}; ours ${ours ? `at ${facts(ours)}: keyspaces ${same ? 'the same' : 'DIFFERENT'}` : 'not restored on disk in this run'}`);
  }
  lines.push(
    '',
    'ratio = replay rev/s / bare 1-put txn/s: the bare rate is one client sending one single-put transaction at a time to the same kind of temporary etcd (same flags, --unsafe-no-fsync included, same db, same scratch), measured right before and right after the restore.',
    "container peak = the highest sum of the restoring process's and its temporary etcd's RSS at one sampling instant (every 200 ms); the other two peaks are each process's own VmHWM.",
    "full restore = etcdctl snapshot restore into the scratch dir + temporary etcd start + lease listing; finalize = temporary etcd stop, db check, second etcdctl snapshot restore with the member's identity, fsync of the restored data dir, atomic swap.",
  );
  const json = JSON.stringify(
    {
      args,
      etcd: version,
      fullMB: chain.fullDbBytes / 1e6,
      fullRevision: chain.fullRevision,
      revisions: REVISIONS,
      deltas,
      chainBuildSeconds: chain.buildSeconds,
      chainCached: chain.cached,
      etcdctlRestoreSeconds: etcdctlSeconds,
      rows,
      gardener,
    },
    null,
    2,
  );
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, text);
  writeFileSync(OUT.replace(/\.txt$/, '') + '.json', json + '\n');
} finally {
  rmSync(root, { recursive: true, force: true });
  rmSync(shmRoot, { recursive: true, force: true });
}
