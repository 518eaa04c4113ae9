// The measured side of bench/snapshot.ts: plain node, the compiled product (run `npm run build`
// first). Takes one full snapshot of a member into a file:// store and prints one JSON line.
// `dist` names another build of the product, to compare two versions in one run.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const { endpoint, storeDir, compression, level, dist = new URL('../dist', import.meta.url).pathname } = JSON.parse(process.argv[2]);
const load = (path) => import(pathToFileURL(resolve(dist, path)).href);
const { loadConfig } = await load('config/index.js');
const { EtcdClient, etcdAccessFromConfig } = await load('etcd/client.js');
const { createLogger } = await load('logger.js');
const { openSnapshotStream } = await load('etcd/snapshot-stream.js');
const { takeFullSnapshot } = await load('snapshot/full.js');
const { LocalStore } = await load('snapstore/local.js');

// The product's own client settings (keepalive, flow-control window), bound to the one member.
const config = loadConfig({ flags: { endpoints: endpoint }, env: {}, requireMember: false }).config;
const client = new EtcdClient(etcdAccessFromConfig(config), createLogger('silent'));
const member = client.member(endpoint);
const store = new LocalStore(storeDir);
const t = performance.now();
const cpu0 = process.cpuUsage();
const full = await takeFullSnapshot(store, { open: () => openSnapshotStream(member), member: 'bench' }, { compression, compressionLevel: level ?? 6, spoolDir: storeDir });
const seconds = (performance.now() - t) / 1000;
// Every thread of the process: the main one and the pool's gzip threads.
const cpu = process.cpuUsage(cpu0);
client.close();
console.log(
  JSON.stringify({
    seconds,
    revision: full.lastRevision,
    dbBytes: full.uncompressedSize,
    storedBytes: full.size,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  }),
);
