// The measured side of bench/datadir.ts: plain node, the compiled product (run `npm run build`
// first). Inspects one data dir one way and prints one JSON line.
import { readFileSync } from 'node:fs';
import { inspectBoltFile, readBoltFacts } from '../dist/etcd/bolt.js';
import { inspectDataDir } from '../dist/etcd/datadir.js';

const { dataDir, how } = JSON.parse(process.argv[2]);
const t = performance.now();
let result;
if (how === 'inspectDataDir') {
  result = await inspectDataDir(dataDir);
} else if (how === 'inspectBoltFile') {
  const f = await inspectBoltFile(`${dataDir}/member/snap/db`);
  result = { revision: f.revision, consistentIndex: Number(f.consistentIndex), pagesRead: f.pagesRead };
} else {
  const f = await readBoltFacts(`${dataDir}/member/snap/db`);
  result = { revision: f.revision, consistentIndex: Number(f.consistentIndex) };
}
const seconds = (performance.now() - t) / 1000;
// VmHWM, not getrusage's maxRSS: on Linux that one keeps the parent's peak across fork and exec.
const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
console.log(JSON.stringify({ seconds, result, peakRssMiB: hwm ? Math.round(Number(hwm[1]) / 1024) : null }));
