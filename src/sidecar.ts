import { redactedConfig, type Config } from './config/index.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from './etcd/client.js';
import { MemberMonitor } from './etcd/monitor.js';
import { probeEndpoint } from './etcd/status.js';
import type { Logger } from './logger.js';
import { buildServer, type App } from './server/app.js';
import { openStore, StoreProbe, type SnapStore } from './snapstore/index.js';
import { Metrics } from './server/metrics.js';

/** A running sidecar: what `serve` starts and what tests start in-process. */
export interface Sidecar {
  app: App;
  etcd: EtcdClient;
  monitor: MemberMonitor;
  store: SnapStore;
  /** The address the API listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  close(): Promise<void>;
}

/** The composition root: wires config, etcd access, health monitor, metrics and the HTTP API. */
export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  log.info({ config: redactedConfig(config) }, 'starting');
  const store = await openStore(config);
  const storeProbe = new StoreProbe(store, config.healthCheckPeriod);
  const etcd = await createEtcdClient(etcdAccessFromConfig(config), log.child({ part: 'etcd' }));
  const metrics = new Metrics();
  const monitor = new MemberMonitor(
    etcd,
    { periodMs: config.healthCheckPeriod, timeoutMs: etcd.memberTimeoutMs, endpoints: config.endpoints },
    log.child({ part: 'monitor' }),
    (status) => metrics.recordClusterStatus(status),
  );
  const app = await buildServer(
    {
      self: { name: config.name, clientURLs: config.advertiseClientUrls },
      clusterStatus: () => monitor.check(),
      probeSelf: () => probeEndpoint(etcd, config.advertiseClientUrls[0] as string, etcd.memberTimeoutMs),
      endpoints: () => etcd.endpoints(),
      storeHealth: () => storeProbe.latest(),
      metrics,
    },
    { bodyLimit: config.serverBodyLimit, logger: log.child({ part: 'api' }) },
  );
  let url: string;
  try {
    url = await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    etcd.close();
    await store.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}`);
  }
  monitor.start();
  storeProbe.start();
  log.info({ url, endpoints: etcd.endpoints() }, 'serving');
  return {
    app,
    etcd,
    monitor,
    store,
    url,
    async close() {
      monitor.stop();
      storeProbe.stop();
      await app.close();
      etcd.close();
      await store.close();
    },
  };
}
