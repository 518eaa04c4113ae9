// The measured side of bench/restore.ts: plain node, the compiled product (run `npm run build`
// first). Restores a file:// store into a data dir and prints one JSON line with its peak RSS.
import { restore } from '../dist/restore/index.js';
import { createLogger } from '../dist/logger.js';
import { LocalStore } from '../dist/snapstore/local.js';

const { storeDir, dataDir, scratchDir, peerURL, replayWindow } = JSON.parse(process.argv[2]);
const t = performance.now();
const result = await restore({
  store: new LocalStore(storeDir),
  dataDir,
  name: 'bench',
  initialCluster: `bench=${peerURL}`,
  initialClusterToken: 'bench',
  initialAdvertisePeerUrls: [peerURL],
  scratchDir,
  replayWindow,
  log: createLogger('warn'),
});
console.log(JSON.stringify({ seconds: (performance.now() - t) / 1000, result, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
