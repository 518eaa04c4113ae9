import { s3Fixture, randomStream, sha256Of } from './test/helpers/store-fixtures.js';
const [conc, part, mode] = process.argv.slice(2);
const fx = await s3Fixture();
const store = await fx.open({ 'store-upload-concurrency': conc!, 'store-part-size': part! });
const base = process.memoryUsage().rss;
let peak = base; const t = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
if (mode === 'put' || mode === 'both') await store.put('o', randomStream(256 << 20).stream);
if (mode === 'get') { await store.put('o', randomStream(256 << 20).stream); if (global.gc) global.gc(); peak = process.memoryUsage().rss; const b2 = peak; await sha256Of(await store.get('o')); console.log('get-only growth', Math.round((peak - b2) / 2 ** 20)); }
clearInterval(t);
console.log(conc, part, mode, 'base', Math.round(base / 2 ** 20), 'peak', Math.round(peak / 2 ** 20), 'heap', Math.round(process.memoryUsage().heapUsed / 2 ** 20), 'ext', Math.round(process.memoryUsage().external/2**20), 'ab', Math.round(process.memoryUsage().arrayBuffers/2**20));
await fx.stop();
