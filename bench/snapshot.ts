// Full and delta snapshots against a real etcd, the measured side on plain node with dist/.
//   npm run bench:snapshot              256 MB db, 60 s of write load
//   npm run bench:snapshot -- 512 30    512 MB db, 30 s of write load
//   npm run bench:snapshot -- 256 60 /other/build/dist   also the default gzip with another build (before/after)
// (1) full snapshot to file:// with compression none and gzip, beside `etcdctl snapshot save` of the
//     same member in the same run: seconds, MB/s, ratio to etcdctl, peak RSS, and the core-seconds
//     spent by etcd and by the sidecar (on N cores a snapshot cannot take less than their sum / N).
// (2) delta capture: a load generator writes as fast as etcd takes it; the sidecar's largest revision
//     lag, the time from the last write to the upload of the delta holding it, and peak RSS.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { SPECS } from '../src/config/options.js';
import { SIDECAR_NODE_FLAGS } from '../src/launcher/node-flags.js';
import { restorableChain } from '../src/snapshot/chain.js';
import { listSnapshots } from '../src/snapshot/snapshotter.js';
import { LocalStore } from '../src/snapstore/local.js';
import { freePort, sleep, TestCluster } from '../test/helpers/cluster.js';

const run = promisify(execFile);
const dbMB = Number(process.argv[2] ?? 256);
const loadSeconds = Number(process.argv[3] ?? 60);
/** Another build of the product whose gzip -6 full snapshot runs beside ours, e.g. the previous commit's. */
const otherDist = process.argv[4];
const childScript = fileURLToPath(new URL('./snapshot-child.mjs', import.meta.url));
const MB = 1e6;
/** --compression-level's default, which the sidecar's full snapshots use. */
const DEFAULT_LEVEL = Number(SPECS.find((s) => s.flag === 'compression-level')?.default);

async function fill(client: Etcd3, bytes: number): Promise<void> {
  // 64 values of 4 KiB per txn: far fewer round trips than single puts, under etcd's 1.5 MiB request
  // limit. Half random, half text, so that compression has something to do and something to skip.
  const text = Buffer.from('{"kind":"Pod","metadata":{"name":"web-0","namespace":"default"},"spec":{}}'.repeat(28).slice(0, 2048));
  let written = 0;
  let n = 0;
  while (written < bytes) {
    const batch = Array.from({ length: 8 }, () => {
      const ops = Array.from({ length: 64 }, () => client.put(`/fill/${(n++).toString(36).padStart(8, '0')}`).value(Buffer.concat([randomBytes(2064), text])));
      return client
        .if('/nonexistent', 'Version', '==', 0)
        .then(...ops)
        .commit();
    });
    await Promise.all(batch);
    written += 8 * 64 * 4112;
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [(performance.now() - t) / 1000, r];
}

/** CPU seconds a process has used so far (user + system), from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function vmRssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function vmHwmMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** `serve` from dist/ beside the cluster's first member, taking snapshots; resolves after its start-up full snapshot. */
async function startSidecar(c: TestCluster, storeDir: string): Promise<{ pid: number; url: string; store: LocalStore; stop(): void }> {
  const port = await freePort();
  const m = c.members[0] as { name: string; dataDir: string; peerURL: string; clientURL: string };
  const proc = spawn(
    process.execPath,
    [
      ...SIDECAR_NODE_FLAGS,
      'dist/cli.js',
      'serve',
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--initial-cluster',
      `${m.name}=${m.peerURL}`,
      '--advertise-client-urls',
      m.clientURL,
      '--listen',
      `127.0.0.1:${port}`,
      '--store',
      `file://${storeDir}`,
      '--snapshot-leader',
      'always',
      '--log-level',
      'warn',
      '--compression',
      'gzip',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  process.once('exit', () => proc.kill('SIGKILL'));
  const store = new LocalStore(storeDir);
  for (let i = 0; i < 1200 && !restorableChain(await listSnapshots(store)).full; i++) await sleep(250);
  await sleep(1000);
  return { pid: proc.pid as number, url: `http://127.0.0.1:${port}`, store, stop: () => void proc.kill('SIGTERM') };
}

const cluster = await TestCluster.start(1, { extraArgs: ['--quota-backend-bytes=8589934592'] });
const client = new Etcd3({ hosts: cluster.endpoints });
const endpoint = cluster.endpoints[0] as string;
const work = mkdtempSync(join(tmpdir(), 'ebs-bench-snapshot-'));
try {
  // ---- (1) full snapshots ----
  await fill(client, dbMB * MB);
  const etcdPid = cluster.members[0]?.process.pid as number;
  const fullRows: { tool: string; seconds: number; dbMB: number; MBps: number; storedMB: number; peakRssMiB: number; etcdCpuSeconds: number; cpuSeconds: number }[] = [];
  const etcdctl = async (): Promise<void> => {
    const file = join(work, 'etcdctl.db');
    const etcdCpu0 = cpuSeconds(etcdPid);
    const [seconds] = await timed(() => run('etcdctl', [`--endpoints=${endpoint}`, 'snapshot', 'save', file], { env: { ...process.env, ETCDCTL_API: '3' } }));
    const size = statSync(file).size;
    rmSync(file);
    fullRows.push({
      tool: 'etcdctl snapshot save',
      seconds,
      dbMB: size / MB,
      MBps: size / MB / seconds,
      storedMB: size / MB,
      peakRssMiB: NaN,
      etcdCpuSeconds: cpuSeconds(etcdPid) - etcdCpu0,
      cpuSeconds: NaN,
    });
  };
  const ours = async (compression: string, level = DEFAULT_LEVEL, dist?: string): Promise<void> => {
    const storeDir = join(work, `store-${compression}`);
    const etcdCpu0 = cpuSeconds(etcdPid);
    const r = await new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, childScript, JSON.stringify({ endpoint, storeDir, compression, level, ...(dist ? { dist } : {}) })], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`snapshot child exited ${code}`))));
    });
    const etcdCpuSeconds = cpuSeconds(etcdPid) - etcdCpu0;
    const j = JSON.parse(r.trim().split('\n').pop() as string) as { seconds: number; dbBytes: number; storedBytes: number; peakRssMiB: number; cpuSeconds: number };
    rmSync(storeDir, { recursive: true, force: true });
    const tool = (compression === 'none' ? 'sidecar, none' : `sidecar, ${compression} -${level}`) + (dist ? ' (other build)' : '');
    fullRows.push({
      tool,
      seconds: j.seconds,
      dbMB: j.dbBytes / MB,
      MBps: j.dbBytes / MB / j.seconds,
      storedMB: j.storedBytes / MB,
      peakRssMiB: j.peakRssMiB,
      etcdCpuSeconds,
      cpuSeconds: j.cpuSeconds,
    });
  };
  // etcdctl, the uncompressed and the default gzip snapshot in alternation (the machine's noise
  // hits all alike), then gzip -6 (the previous default) and the other build's default.
  for (let round = 0; round < 3; round++) {
    await etcdctl();
    await ours('none');
    await ours('gzip');
  }
  await ours('gzip', 6);
  if (otherDist) await ours('gzip', DEFAULT_LEVEL, otherDist);
  const median = (tool: string): number => {
    const xs = fullRows
      .filter((r) => r.tool === tool)
      .map((r) => r.seconds)
      .sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)] as number;
  };
  const base = median('etcdctl snapshot save');

  // ---- the sidecar process itself around a full snapshot of the big db ----
  const big = await startSidecar(cluster, join(work, 'sidecar-big'));
  const sidecarIdleRss = vmRssMiB(big.pid);
  const sidecarFullPeakRss = vmHwmMiB(big.pid);
  big.stop();

  // ---- (2) delta capture under maximum write load, on a fresh member ----
  const fresh = await TestCluster.start(1);
  const freshClient = new Etcd3({ hosts: fresh.endpoints });
  const sidecar = await startSidecar(fresh, join(work, 'deltas'));
  // The start-up full snapshot is done: from here the peak RSS is the delta capture's.
  writeFileSync(`/proc/${sidecar.pid}/clear_refs`, '5');
  let maxLag = 0;
  const sampleLag = async (): Promise<void> => {
    const text = await (await fetch(`${sidecar.url}/metrics`)).text().catch(() => '');
    const lag = /etcd_backup_sidecar_delta_revision_lag (\d+)/.exec(text);
    if (lag) maxLag = Math.max(maxLag, Number(lag[1]));
  };
  let writing = true;
  let writes = 0;
  let lastWriteAt = 0;
  const writers = Array.from({ length: 32 }, async (_, w) => {
    const value = randomBytes(256);
    while (writing) {
      await freshClient.put(`/load/${w}/${writes % 1000}`).value(value);
      writes++;
      lastWriteAt = performance.now();
    }
  });
  const started = performance.now();
  const sampler = setInterval(() => void sampleLag(), 250);
  await sleep(loadSeconds * 1000);
  writing = false;
  await Promise.all(writers);
  const loadElapsed = (lastWriteAt - started) / 1000;
  const finalRevision = Number((await freshClient.maintenance.status()).header.revision);
  let uploadedAt = NaN;
  for (let i = 0; i < 1200; i++) {
    const chain = restorableChain(await listSnapshots(sidecar.store));
    if (chain.lastRevision >= finalRevision) {
      uploadedAt = performance.now();
      break;
    }
    await sleep(25);
  }
  clearInterval(sampler);
  await sampleLag();
  const deltaPeakRss = vmHwmMiB(sidecar.pid);
  sidecar.stop();
  freshClient.close();
  await fresh.stop();

  const delta = {
    seconds: loadElapsed,
    writes,
    writesPerSecond: writes / loadElapsed,
    finalRevision,
    maxRevisionLag: maxLag,
    lastWriteToUploadSeconds: (uploadedAt - lastWriteAt) / 1000,
    deltaPeriodSeconds: 5,
    peakRssMiB: deltaPeakRss,
    sidecarIdleRssMiB: sidecarIdleRss,
    sidecarPeakRssDuringStartupFullMiB: sidecarFullPeakRss,
  };

  console.log(`\nFull snapshot of a ${(fullRows[0]?.dbMB ?? 0).toFixed(0)} MB db (etcd 3.4, loopback, file:// store on the same disk)`);
  const dash = (x: number, digits = 0): string => (Number.isNaN(x) ? '-' : x.toFixed(digits));
  console.log('tool                      seconds   MB/s    stored MB  ratio to etcdctl  peak RSS MiB  etcd cpu-s  sidecar cpu-s');
  for (const r of fullRows) {
    console.log(
      `${r.tool.padEnd(24)}  ${r.seconds.toFixed(2).padStart(7)}  ${r.MBps.toFixed(0).padStart(5)}  ${r.storedMB.toFixed(0).padStart(9)}  ${(r.seconds / base).toFixed(2).padStart(16)}  ${dash(r.peakRssMiB).padStart(12)}  ${dash(r.etcdCpuSeconds, 2).padStart(10)}  ${dash(r.cpuSeconds, 2).padStart(13)}`,
    );
  }
  const gzipDefault = `sidecar, gzip -${DEFAULT_LEVEL}`;
  console.log(
    `median ratio to etcdctl: none ${(median('sidecar, none') / base).toFixed(2)}, ${gzipDefault.slice(9)} ${(median(gzipDefault) / base).toFixed(2)} (the default full snapshot); ${availableParallelism()} cores`,
  );
  console.log(`\nDelta capture under maximum write load (32 writers, 256-byte values, --delta-snapshot-period=5s, gzip)`);
  console.log(
    `writes: ${writes} in ${loadElapsed.toFixed(1)} s = ${delta.writesPerSecond.toFixed(0)}/s; max revision lag ${maxLag}; last write to its delta uploaded: ${delta.lastWriteToUploadSeconds.toFixed(2)} s; peak RSS under load ${deltaPeakRss} MiB`,
  );
  console.log(
    `the sidecar process beside the ${(fullRows[0]?.dbMB ?? 0).toFixed(0)} MB member: peak ${sidecarFullPeakRss} MiB during its start-up full snapshot (gzip), ${sidecarIdleRss} MiB once done`,
  );
  console.log(JSON.stringify({ full: fullRows, cores: availableParallelism(), medianRatioNone: median('sidecar, none') / base, medianRatioGzipDefault: median(gzipDefault) / base, delta }));
} finally {
  client.close();
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
