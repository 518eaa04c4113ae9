// The measured side of bench/restore.ts: plain node, the compiled product (run `npm run build`
// first). Restores a file:// store into a data dir and prints one JSON line with its peak RSS and CPU time.
// `dist` names another build of the product, to compare two versions on the same chain.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const { storeDir, dataDir, scratchDir, peerURL, replayWindow, prefetchBytes, dist = new URL('../dist', import.meta.url).pathname } = JSON.parse(process.argv[2]);
const load = (path) => import(pathToFileURL(resolve(dist, path)).href);
const { restore } = await load('restore/index.js');
const { createLogger } = await load('logger.js');
const { LocalStore } = await load('snapstore/local.js');
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
  ...(prefetchBytes ? { prefetchBytes } : {}),
  log: createLogger('warn'),
});
console.log(
  JSON.stringify({
    seconds: (performance.now() - t) / 1000,
    result,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
  }),
);
