// The measured side of bench/store.ts: plain node, the compiled product (run `npm run build` first).
// Opens the store from flags, puts `sizeMiB` of random bytes as a stream, reads them back, and prints
// one JSON line with throughput and RSS.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { loadConfig } from '../dist/config/index.js';
import { openStore } from '../dist/snapstore/index.js';

const { flags, sizeMiB } = JSON.parse(process.argv[2]);
const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const atPeak = {};
function sampler() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > peak) {
      peak = m.rss;
      for (const k of ['heapUsed', 'heapTotal', 'external', 'arrayBuffers']) atPeak[k] = Math.round(m[k] / 2 ** 20);
    }
  }, 20);
  return () => (clearInterval(timer), Math.round(Math.max(peak, process.memoryUsage().rss) / 2 ** 20));
}

const store = await openStore(loadConfig({ flags, env: {}, requireMember: false }).config);
const baselineRssMiB = rssMiB();
const size = sizeMiB * 2 ** 20;
const sent = createHash('sha256');
let left = size;
const source = new Readable({
  read() {
    if (left === 0) return void this.push(null);
    const b = randomBytes(Math.min(1 << 20, left));
    left -= b.length;
    sent.update(b);
    this.push(b);
  },
});
let stop = sampler();
let t = performance.now();
const put = await store.put('bench/object', source);
const putS = (performance.now() - t) / 1000;
const putPeakRssMiB = stop();

stop = sampler();
t = performance.now();
const got = createHash('sha256');
for await (const chunk of await store.get('bench/object')) got.update(chunk);
const getS = (performance.now() - t) / 1000;
const getPeakRssMiB = stop();
const ok = got.digest('hex');
if (ok !== put.sha256 || ok !== sent.digest('hex')) throw new Error('read back different bytes');
await store.close();
const mb = size / 1e6;
console.log(JSON.stringify({ sizeMiB, putMBps: Math.round(mb / putS), getMBps: Math.round(mb / getS), baselineRssMiB, putPeakRssMiB, getPeakRssMiB, verifiedBy: put.verifiedBy, atPeakMiB: atPeak }));
