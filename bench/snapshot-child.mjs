// The measured side of bench/snapshot.ts: plain node, the compiled product (run `npm run build`
// first). Takes one full snapshot of a member into a file:// store and prints one JSON line.
import { loadConfig } from '../dist/config/index.js';
import { EtcdClient, etcdAccessFromConfig } from '../dist/etcd/client.js';
import { createLogger } from '../dist/logger.js';
import { openSnapshotStream } from '../dist/etcd/snapshot-stream.js';
import { takeFullSnapshot } from '../dist/snapshot/full.js';
import { LocalStore } from '../dist/snapstore/local.js';

const { endpoint, storeDir, compression, level } = JSON.parse(process.argv[2]);
// The product's own client settings (keepalive, flow-control window), bound to the one member.
const config = loadConfig({ flags: { endpoints: endpoint }, env: {}, requireMember: false }).config;
const client = new EtcdClient(etcdAccessFromConfig(config), createLogger('silent'));
const member = client.member(endpoint);
const store = new LocalStore(storeDir);
const t = performance.now();
const full = await takeFullSnapshot(store, { open: () => openSnapshotStream(member), member: 'bench' }, { compression, compressionLevel: level ?? 6, spoolDir: storeDir });
const seconds = (performance.now() - t) / 1000;
client.close();
console.log(JSON.stringify({ seconds, revision: full.lastRevision, dbBytes: full.uncompressedSize, storedBytes: full.size, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
