// The measured side of bench/snapshot.ts: plain node, the compiled product (run `npm run build`
// first). Takes one full snapshot of a member into a file:// store and prints one JSON line.
import { Etcd3 } from 'etcd3';
import { openSnapshotStream } from '../dist/etcd/snapshot-stream.js';
import { takeFullSnapshot } from '../dist/snapshot/full.js';
import { LocalStore } from '../dist/snapstore/local.js';

const { endpoint, storeDir, compression } = JSON.parse(process.argv[2]);
const member = new Etcd3({ hosts: [endpoint] });
const store = new LocalStore(storeDir);
const t = performance.now();
const full = await takeFullSnapshot(store, { open: () => openSnapshotStream(member), member: 'bench' }, { compression, compressionLevel: 6, spoolDir: storeDir });
const seconds = (performance.now() - t) / 1000;
member.close();
console.log(JSON.stringify({ seconds, revision: full.lastRevision, dbBytes: full.uncompressedSize, storedBytes: full.size, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
