// Data dir inspection of a member with a large db, the measured side on plain node with dist/.
//   npm run bench:datadir            a >= 1024 MB db
//   npm run bench:datadir -- 2048    a >= 2048 MB db
// Builds the db with big values written concurrently (plus 100k small keys, so the key bucket is a
// real tree), stops the member, then times, in a fresh process each: inspectDataDir (meta pages, one
// path down the key bucket, the whole WAL with its CRC chain), inspectBoltFile alone (its db part)
// and, for contrast, readBoltFacts (the full streaming scan of the db); each with the dir's files
// evicted from the page cache (cold, as after a node restart) and cached (warm). The WAL is measured
// at its largest: the member is stopped before etcd's 30 s purge trims it to 5 segments. Prints a
// table and JSON, and writes bench/results/datadir.txt.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { TestCluster } from '../test/helpers/cluster.js';

const run = promisify(execFile);
const dbMB = Number(process.argv[2] ?? 1024);
const childScript = fileURLToPath(new URL('./datadir-child.mjs', import.meta.url));
const resultsFile = fileURLToPath(new URL('./results/datadir.txt', import.meta.url));
const MB = 1e6;
const VALUE_BYTES = 1_000_000; // under etcd's 1.5 MiB request limit

async function fill(client: Etcd3, targetBytes: number): Promise<number> {
  // 100k small keys, 100 a txn: a key bucket several levels deep.
  const small = Buffer.alloc(100, 's');
  for (let t = 0; t < 1000; t += 8) {
    await Promise.all(
      Array.from({ length: 8 }, (_, j) => client.kv.txn({ success: Array.from({ length: 100 }, (_, i) => ({ request_put: { key: Buffer.from(`small/${t + j}/${i}`), value: small } })) })),
    );
  }
  // Then big random values from 16 writers until the db is large enough.
  let n = 0;
  let dbBytes = 0;
  while (dbBytes < targetBytes) {
    await Promise.all(Array.from({ length: 16 }, () => client.put(`big/${(n++).toString().padStart(8, '0')}`).value(randomBytes(VALUE_BYTES))));
    if (n % 64 === 0) dbBytes = Number((await client.maintenance.status()).dbSize);
  }
  return Number((await client.maintenance.status()).dbSize);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** Drops this data dir's files (only these) from the page cache: a read after it comes from disk. */
async function evict(dataDir: string): Promise<void> {
  await run('sync');
  for (const f of filesUnder(dataDir)) await run('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
}

async function warm(dataDir: string): Promise<void> {
  for (const f of filesUnder(dataDir)) await run('dd', [`if=${f}`, 'of=/dev/null', 'bs=1M', 'status=none']);
}

interface Row {
  how: string;
  cache: 'cold' | 'warm';
  seconds: number;
  peakRssMiB: number;
  revision: number;
}

async function measure(dataDir: string, how: string, cache: 'cold' | 'warm'): Promise<Row> {
  if (cache === 'cold') await evict(dataDir);
  else await warm(dataDir);
  const out = await new Promise<string>((resolve, reject) => {
    let text = '';
    const p = spawn(process.execPath, [childScript, JSON.stringify({ dataDir, how })], { stdio: ['ignore', 'pipe', 'inherit'] });
    p.stdout.on('data', (d: Buffer) => (text += d.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`child exited ${code}`))));
  });
  const j = JSON.parse(out.trim().split('\n').pop() as string) as { seconds: number; peakRssMiB: number; result: { revision: number; state?: string; reason?: string } };
  if (how === 'inspectDataDir') console.error(j.result.reason);
  if (j.result.state !== undefined && j.result.state !== 'valid') throw new Error(`inspection says ${j.result.state}: ${j.result.reason}`);
  return { how, cache, seconds: j.seconds, peakRssMiB: j.peakRssMiB, revision: j.result.revision };
}

const cluster = await TestCluster.start(1, {
  // Room for the db; frequent raft snapshots so etcd purges WAL segments down to its default 5, as
  // a long-running member's dir looks.
  extraArgs: ['--quota-backend-bytes=17179869184', '--snapshot-count=500'],
});
try {
  const member = cluster.members[0];
  if (!member) throw new Error('no member');
  const client = new Etcd3({ hosts: cluster.endpoints });
  const fillStart = performance.now();
  const statusDbBytes = await fill(client, dbMB * MB);
  const fillSeconds = (performance.now() - fillStart) / 1000;
  client.close();
  const [status] = await cluster.endpointStatus();
  const revision = status?.Status.header.revision ?? NaN;
  await member.process.stop(60_000);

  const walDir = join(member.dataDir, 'member', 'wal');
  const walFiles = readdirSync(walDir).filter((f) => f.endsWith('.wal'));
  const walBytes = walFiles.reduce((sum, f) => sum + statSync(join(walDir, f)).size, 0);
  const dbBytes = statSync(join(member.dataDir, 'member', 'snap', 'db')).size;

  const rows: Row[] = [];
  for (const cache of ['cold', 'warm'] as const) {
    for (const how of ['inspectDataDir', 'inspectBoltFile', 'readBoltFacts (full scan)']) rows.push(await measure(member.dataDir, how, cache));
  }
  for (const r of rows) if (r.revision !== revision) throw new Error(`${r.how} says revision ${r.revision}, etcd said ${revision}`);

  const lines = [
    `# npm run bench:datadir (= tsx bench/datadir.ts ${dbMB}), ${new Date().toISOString().slice(0, 10)}, 2 cores shared, etcd 3.4.23`,
    '',
    `Data dir of one stopped member: db ${(dbBytes / MB).toFixed(0)} MB (etcd reported ${(statusDbBytes / MB).toFixed(0)} MB), revision ${revision}, ${walFiles.length} WAL segments ${(walBytes / MB).toFixed(0)} MB; filled in ${fillSeconds.toFixed(0)} s`,
    "cold: the dir's files dropped from the page cache first (dd iflag=nocache); warm: read once before",
    `${'what'.padEnd(28)}${'cache'.padEnd(8)}${'seconds'.padStart(9)}${'peak RSS MiB'.padStart(14)}`,
    ...rows.map((r) => `${r.how.padEnd(28)}${r.cache.padEnd(8)}${r.seconds.toFixed(2).padStart(9)}${String(r.peakRssMiB).padStart(14)}`),
    JSON.stringify({ dbBytes, statusDbBytes, revision, walFiles: walFiles.length, walBytes, fillSeconds, rows }),
  ];
  const text = lines.join('\n');
  console.log(text);
  writeFileSync(resultsFile, `${text}\n`);
} finally {
  await cluster.stop();
}
