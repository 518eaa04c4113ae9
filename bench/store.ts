// Puts and gets a 1 GiB stream through each store provider and prints MB/s and RSS.
// The servers (s3rver, moto_server, Azurite, and MinIO and fake-gcs-server where `npm run peers` built them) run in their own processes; the
// measured side runs in a child on plain node with the compiled product (dist/, as the image runs
// it), so its RSS is the sidecar's own and nothing else's.
//   npm run bench:store             every provider, 1 GiB
//   npm run bench:store -- 256      every provider, 256 MiB
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AZURITE, azuriteFixture, FAKE_GCS, gcsFixture, MINIO, minioFixture } from '../test/helpers/peer-stores.js';
import { hasMotoServer, localFixture, motoFixture, s3Fixture, type StoreFixture } from '../test/helpers/store-fixtures.js';

const FIXTURES: Array<[string, () => Promise<StoreFixture>]> = [
  ['local', localFixture],
  ['s3 (s3rver)', s3Fixture],
  ...(hasMotoServer() ? ([['s3 (moto)', motoFixture]] as Array<[string, () => Promise<StoreFixture>]>) : []),
  ...('path' in MINIO ? ([['s3 (MinIO)', minioFixture]] as Array<[string, () => Promise<StoreFixture>]>) : []),
  ...('path' in FAKE_GCS ? ([['gcs (fake-gcs-server)', gcsFixture]] as Array<[string, () => Promise<StoreFixture>]>) : []),
  ...('path' in AZURITE ? ([['azblob (Azurite)', azuriteFixture]] as Array<[string, () => Promise<StoreFixture>]>) : []),
];

interface Row {
  provider: string;
  sizeMiB: number;
  putMBps: number;
  getMBps: number;
  baselineRssMiB: number;
  putPeakRssMiB: number;
  getPeakRssMiB: number;
  verifiedBy: string;
}

const sizeMiB = Number(process.argv[2] ?? 1024);
const only = process.argv[3]; // e.g. `gcs`: run the providers whose name starts with it
// Store flags to try, e.g. BENCH_FLAGS='{"store-part-size":"5MiB"}'.
const extraFlags = JSON.parse(process.env['BENCH_FLAGS'] ?? '{}') as Record<string, string>;
const child = fileURLToPath(new URL('./store-child.mjs', import.meta.url));
const rows: Row[] = [];
for (const [provider, make] of FIXTURES.filter(([name]) => !only || name.startsWith(only))) {
  const fx = await make();
  try {
    // Spawned asynchronously: the fault-injecting proxy in front of a peer runs in this process and must keep serving.
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [child, JSON.stringify({ flags: { ...fx.flags, ...extraFlags }, sizeMiB })], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (status) => resolve({ status, stdout, stderr }));
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) {
      console.error(`${provider} failed:\n${r.stderr.slice(-3000)}`);
      process.exitCode = 1;
      continue;
    }
    rows.push({ provider, ...(JSON.parse(line) as Omit<Row, 'provider'>) });
  } finally {
    await fx.stop();
  }
}

console.log('provider     size      put MB/s  get MB/s  RSS at start  peak RSS put  peak RSS get  verified by');
for (const r of rows) {
  console.log(
    `${r.provider.padEnd(12)} ${`${r.sizeMiB} MiB`.padEnd(9)} ${String(r.putMBps).padStart(8)}  ${String(r.getMBps).padStart(8)}  ${`${r.baselineRssMiB} MiB`.padStart(12)}  ${`${r.putPeakRssMiB} MiB`.padStart(12)}  ${`${r.getPeakRssMiB} MiB`.padStart(12)}  ${r.verifiedBy}`,
  );
}
console.log(JSON.stringify(rows));
process.exit();
