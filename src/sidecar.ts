import { isLoopbackHost, loadSecrets, redactedConfig, redactor, type Config } from './config/index.js';
import { loadServerTls } from './server/tls.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from './etcd/client.js';
import { MemberMonitor } from './etcd/monitor.js';
import { probeEndpoint } from './etcd/status.js';
import type { Logger } from './logger.js';
import { buildServer, type App, type BackupState } from './server/app.js';
import { openStore, StoreProbe, type SnapStore } from './snapstore/index.js';
import { Metrics } from './server/metrics.js';
import { tmpdir } from 'node:os';
import { ForeignChainError, listSnapshots, Snapshotter } from './snapshot/snapshotter.js';
import type { Compression } from './snapshot/names.js';
import type { GcPolicy } from './snapshot/retention.js';
import { startBackupLeadership, type BackupLeadership, type SnapshotLeaderMode } from './cluster/leadership.js';
import { DutyRunner } from './cluster/leader.js';
import { defaultApiURL } from './cluster/heartbeat.js';
import { HeartbeatAges } from './cluster/heartbeat-ages.js';
import { Initializer } from './initializer/act.js';
import { rejoinRecovery } from './initializer/rejoin.js';

/** A running sidecar: what `serve` starts and what tests start in-process. */
export interface Sidecar {
  app: App;
  etcd: EtcdClient;
  monitor: MemberMonitor;
  store: SnapStore;
  /** Present while this sidecar is the backup leader and takes snapshots. */
  readonly snapshotter: Snapshotter | undefined;
  /** Backup-leader election and heartbeats. */
  cluster: BackupLeadership;
  /** The address the API listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Decides how the member starts (`POST /initialize`) and renders etcd's config (`GET /config`). */
  initializer: Initializer;
  close(): Promise<void>;
}

/** The composition root: wires config, etcd access, health monitor, metrics and the HTTP API. */
export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  log.info({ config: redactedConfig(config) }, 'starting');
  // Secrets and certificates are read before anything starts, so a bad file fails the start cleanly.
  const secrets = loadSecrets(config);
  const https = config.serverCert !== '' ? loadServerTls({ cert: config.serverCert, key: config.serverKey, ...(config.serverClientCa !== '' ? { clientCa: config.serverClientCa } : {}) }) : undefined;
  if (!secrets.apiToken && !isLoopbackHost(config.listen.host)) {
    log.warn({ listen: `${config.listen.host}:${config.listen.port}` }, '--insecure-api: mutating requests are accepted from anyone who reaches this port');
  }
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
  const mode = config.snapshotLeader as SnapshotLeaderMode;
  const memberURL = config.advertiseClientUrls[0] as string;
  // A fresh Snapshotter per term as backup leader: each one resumes from the store's chain as the
  // previous leader (maybe another sidecar) left it.
  const duties = new DutyRunner(
    () =>
      new Snapshotter(
        {
          fullSchedule: config.fullSnapshotSchedule,
          deltaPeriodMs: config.deltaSnapshotPeriod,
          deltaMemoryLimit: config.deltaSnapshotMemoryLimit,
          compression: config.compression as Compression,
          compressionLevel: config.compressionLevel,
          spoolDir: config.spoolDir || tmpdir(),
          retention: { policy: config.gcPolicy as GcPolicy, maxBackups: config.maxBackups },
          gcPeriodMs: config.gcPeriod,
        },
        { store, member: etcd.member(memberURL), memberName: config.name, log: log.child({ part: 'snapshot' }), observer: metrics },
      ),
    log.child({ part: 'snapshot' }),
    (snapshotter, err) => {
      snapshotter.problem = err instanceof ForeignChainError ? err.message : `snapshotter not started: ${err.message}`;
    },
  );
  metrics.followDeltas(() => duties.current?.deltaState);
  // One judge of heartbeat ages for the election and the initializer: both see the same members alive.
  const ages = new HeartbeatAges();
  const cluster = startBackupLeadership(config, mode, { etcd, store, metrics, duties, log, ages });
  const leading = (): Snapshotter => {
    const s = duties.current;
    if (!s) throw new Error('this sidecar is no longer the backup leader');
    return s;
  };
  const initializer = new Initializer({ config, etcd, store, log: log.child({ part: 'initializer' }), heartbeat: cluster.heartbeat, ages });
  const rejoin = watchForRecovery(config, cluster, initializer);
  const app = await buildServer(
    {
      self: { name: config.name, clientURLs: config.advertiseClientUrls },
      clusterStatus: () => monitor.check(),
      probeSelf: () => probeEndpoint(etcd, config.advertiseClientUrls[0] as string, etcd.memberTimeoutMs),
      endpoints: () => etcd.endpoints(),
      storeHealth: () => storeProbe.latest(),
      metrics,
      snapshots: {
        unavailable: () => (duties.current ? duties.current.problem : cluster.whyNotLeading()),
        forwardTo: () => cluster.forwardTo(),
        deltasEnabled: config.deltaSnapshotPeriod > 0,
        takeFull: () => leading().takeFull('requested through the API'),
        takeDelta: () => leading().takeDelta(),
        list: () => listSnapshots(store),
        state: () => {
          const snapshotter = duties.current;
          if (!snapshotter) return { takesSnapshots: false };
          const deltas = snapshotter.deltaState;
          const state: BackupState = { takesSnapshots: true };
          if (snapshotter.problem) state.problem = snapshotter.problem;
          if (snapshotter.lastFull) state.lastFull = snapshotter.lastFull;
          if (deltas?.lastUpload) state.lastDelta = deltas.lastUpload;
          const uploaded = Math.max(snapshotter.lastFull?.lastRevision ?? 0, deltas?.uploadedRevision ?? 0);
          if (uploaded > 0) state.uploadedRevision = uploaded;
          if (deltas?.etcdRevision) state.etcdRevision = deltas.etcdRevision;
          return state;
        },
      },
      cluster: () => cluster.view(),
      initializer,
    },
    {
      bodyLimit: config.serverBodyLimit,
      logger: log.child({ part: 'api' }),
      ...(secrets.apiToken ? { apiToken: secrets.apiToken } : {}),
      ...(https ? { https } : {}),
      scrub: redactor(secrets.values),
      requestTimeoutMs: config.serverRequestTimeout,
    },
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
  cluster.start(config.advertiseApiUrl || defaultApiURL(config.listen.host, new URL(url).port ? Number(new URL(url).port) : config.listen.port, config.advertiseClientUrls));
  log.info({ url, endpoints: etcd.endpoints() }, 'serving');
  return {
    app,
    etcd,
    monitor,
    store,
    get snapshotter() {
      return duties.current;
    },
    cluster,
    url,
    initializer,
    async close() {
      clearInterval(rejoin);
      initializer.stop();
      await cluster.stop();
      monitor.stop();
      storeProbe.stop();
      await app.close();
      etcd.close();
      await store.close();
    },
  };
}

/**
 * Initializes again when this member's etcd runs without quorum for a TTL while another member
 * waits for a recovery (src/initializer/rejoin.ts): the launcher then stops etcd and its data takes
 * part in the recovery.
 */
function watchForRecovery(config: Config, cluster: BackupLeadership, initializer: Initializer): NodeJS.Timeout {
  let noQuorumSince: number | undefined;
  const timer = setInterval(() => {
    const now = performance.now();
    const { roles } = cluster;
    if (roles.etcdUp && roles.role === 'unknown') noQuorumSince ??= now;
    else noQuorumSince = undefined;
    const state = initializer.status().state;
    const why = rejoinRecovery({
      self: config.name,
      idle: state === 'Successful' || state === 'New',
      etcdUp: roles.etcdUp,
      noQuorumSinceMs: noQuorumSince,
      nowMs: now,
      ...(roles.facts?.clusterId ? { clusterId: roles.facts.clusterId } : {}),
      heartbeats: cluster.directory.latest(),
      ttlMs: config.heartbeatTtl,
    });
    if (why) {
      noQuorumSince = undefined;
      initializer.reinitialize(why);
    }
  }, config.leaderCheckPeriod);
  timer.unref();
  return timer;
}
