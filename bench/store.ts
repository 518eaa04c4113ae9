// Puts and gets a 1 GiB stream through each store provider and prints MB/s and peak RSS.
// Each provider runs in its own child process so its peak RSS is its own.
//   npm run bench:store             all providers, 1 GiB
//   npm run bench:store -- 256      all providers, 256 MiB
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SnapStore } from '../src/snapstore/index.js';
import { gcsFixture, localFixture, randomStream, s3Fixture, sha256Of, type StoreFixture } from '../test/helpers/store-fixtures.js';

const FIXTURES: Record<string, () => Promise<StoreFixture>> = { local: localFixture, s3: s3Fixture, gcs: gcsFixture };

interface Row {
  provider: string;
  sizeMiB: number;
  putMBps: number;
  getMBps: number;
  peakRssMiB: number;
  verifiedBy: string;
}

async function runOne(provider: string, sizeMiB: number): Promise<Row> {
  const fx = await (FIXTURES[provider] as () => Promise<StoreFixture>)();
  const store: SnapStore = await fx.open();
  try {
    const size = sizeMiB * 2 ** 20;
    const src = randomStream(size);
    let t = performance.now();
    const put = await store.put('bench/object', src.stream);
    const putS = (performance.now() - t) / 1000;
    t = performance.now();
    const read = await sha256Of(await store.get('bench/object'));
    const getS = (performance.now() - t) / 1000;
    if (read.sha256 !== put.sha256 || read.sha256 !== src.sha256()) throw new Error(`${provider}: read back different bytes`);
    const mb = size / 1e6;
    return {
      provider,
      sizeMiB,
      putMBps: Math.round(mb / putS),
      getMBps: Math.round(mb / getS),
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      verifiedBy: put.verifiedBy,
    };
  } finally {
    await store.close();
    await fx.stop();
  }
}

const args = process.argv.slice(2);
if (args[0] === '--child') {
  const row = await runOne(args[1] as string, Number(args[2]));
  process.stdout.write(`${JSON.stringify(row)}\n`);
  process.exit(0);
}

const sizeMiB = Number(args[0] ?? 1024);
const rows: Row[] = [];
for (const provider of Object.keys(FIXTURES)) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', provider, String(sizeMiB)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    console.error(`${provider} failed:\n${r.stderr.slice(-3000)}`);
    process.exitCode = 1;
    continue;
  }
  rows.push(JSON.parse(line) as Row);
}
console.log('provider  size      put MB/s  get MB/s  peak RSS  verified by');
for (const r of rows) {
  console.log(`${r.provider.padEnd(9)} ${`${r.sizeMiB} MiB`.padEnd(9)} ${String(r.putMBps).padStart(8)}  ${String(r.getMBps).padStart(8)}  ${`${r.peakRssMiB} MiB`.padStart(8)}  ${r.verifiedBy}`);
}
console.log(JSON.stringify(rows));
