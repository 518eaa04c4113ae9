import { isLoopbackHost, loadSecrets, redactedConfig, redactor, type Config } from './config/index.js';
import { loadServerTls } from './server/tls.js';
import { createEtcdClient, etcdAccessFromConfig, type EtcdClient } from './etcd/client.js';
import { MemberMonitor } from './etcd/monitor.js';
import { probeEndpoint } from './etcd/status.js';
import type { Logger } from './logger.js';
import { buildServer, type App, type ServerOptions, type SnapshotApi } from './server/app.js';
import type { DefragApi } from './server/deps.js';
import { DefragMetrics } from './server/defrag-metrics.js';
import { Defragmenter, type DefragReport } from './defrag/defragmenter.js';
import { DefragSchedule } from './defrag/schedule.js';
import { compactHistory, defragmentMember, disarmNospace, listAlarms } from './etcd/maintenance.js';
import { NOSPACE, NospaceRecovery } from './defrag/nospace.js';
import { backupStateOf } from './snapshot/backup-state.js';
import { openStore, StoreProbe, type SnapStore } from './snapstore/index.js';
import { Metrics } from './server/metrics.js';
import { tmpdir } from 'node:os';
import { ForeignChainError, listSnapshots, schedulePeriodMs, Snapshotter, type SnapshotterSettings } from './snapshot/snapshotter.js';
import type { Compression } from './snapshot/names.js';
import type { GcPolicy } from './snapshot/retention.js';
import { BackupLeadership, type SnapshotLeaderMode } from './cluster/backup-leadership.js';
import { DutyRunner } from './cluster/duty-runner.js';
import { defaultApiURL } from './cluster/heartbeat.js';
import { HeartbeatAges } from './cluster/heartbeat-ages.js';
import { Initializer } from './initializer/initializer.js';
import { watchForRecovery } from './initializer/rejoin-watch.js';
import { replayRatesFile } from './restore/replay-rates.js';
import { compactChain, compactOptionsFromConfig, CompactBusyError } from './restore/compact.js';
import { afterUpload, type SnapshotObserver, type SnapshotRecord } from './snapshot/record.js';
import { SecondarySync } from './snapshot/secondary-sync.js';
import { SecondarySyncMetrics } from './server/secondary-metrics.js';

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
  const server = serverOptions(config, log);
  const store = await openStore(config);
  const storeProbe = new StoreProbe(store, config.healthCheckPeriod);
  const etcd = await createEtcdClient(etcdAccessFromConfig(config), log.child({ part: 'etcd' }));
  const metrics = new Metrics();
  const monitor = new MemberMonitor(etcd, { periodMs: config.healthCheckPeriod, timeoutMs: etcd.memberTimeoutMs, endpoints: config.endpoints }, log.child({ part: 'monitor' }), (status) => {
    metrics.recordClusterStatus(status);
    defrag.nospace?.observe(status);
  });
  const mode = config.snapshotLeader as SnapshotLeaderMode;
  const secondary = await secondaryStore(config, store, { leads: () => cluster.role === 'leader', metrics, log });
  const duties = backupDuties(config, store, etcd, secondary ? afterUpload(metrics, () => secondary.kick()) : metrics, log);
  metrics.followDeltas(() => duties.current?.deltaState);
  metrics.snapshotPeriods(schedulePeriodMs(config.fullSnapshotSchedule), config.deltaSnapshotPeriod);
  metrics.followRestoreEstimate(() => duties.current?.restoreEstimate?.seconds);
  // One judge of heartbeat ages for the election and the initializer: both see the same members alive.
  const ages = new HeartbeatAges();
  const cluster = new BackupLeadership(config, mode, { etcd, store, metrics, duties, log, ages });
  metrics.followLeadership(() => cluster.role === 'leader' || cluster.forwardTo() !== undefined);
  const initializer = new Initializer({ config, etcd, store, log: log.child({ part: 'initializer' }), heartbeat: cluster.heartbeat, ages });
  const rejoin = watchForRecovery(config, cluster, initializer);
  const defrag = defragmentation(config, { etcd, monitor, metrics, duties, cluster, log });
  const app = await buildServer(
    {
      self: { name: config.name, clientURLs: config.advertiseClientUrls },
      clusterStatus: () => monitor.check(),
      probeSelf: () => probeEndpoint(etcd, config.advertiseClientUrls[0] as string, etcd.memberTimeoutMs),
      endpoints: () => etcd.endpoints(),
      storeHealth: () => storeProbe.latest(),
      metrics,
      snapshots: snapshotApi(config, store, duties, cluster, log),
      cluster: () => cluster.view(),
      initializer,
      defrag: defrag.api,
      ...(secondary ? { secondaryStore: () => secondary.status() } : {}),
    },
    server,
  );
  let url: string;
  try {
    url = await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    etcd.close();
    await store.close();
    await secondary?.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}`, { cause: err });
  }
  monitor.start();
  storeProbe.start();
  defrag.schedule.start();
  secondary?.start();
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
      await defrag.schedule.stop();
      await secondary?.close();
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

/** The API server's settings, with the secrets and certificates it needs read now. */
function serverOptions(config: Config, log: Logger): ServerOptions {
  const secrets = loadSecrets(config);
  if (!secrets.apiToken && !isLoopbackHost(config.listen.host)) {
    log.warn({ listen: `${config.listen.host}:${config.listen.port}` }, '--insecure-api: mutating requests are accepted from anyone who reaches this port');
  }
  return {
    bodyLimit: config.serverBodyLimit,
    logger: log.child({ part: 'api' }),
    ...(secrets.apiToken ? { apiToken: secrets.apiToken } : {}),
    ...(config.serverCert !== '' ? { https: loadServerTls({ cert: config.serverCert, key: config.serverKey, ...(config.serverClientCa !== '' ? { clientCa: config.serverClientCa } : {}) }) } : {}),
    scrub: redactor(secrets.values),
    requestTimeoutMs: config.serverRequestTimeout,
  };
}

/**
 * A fresh Snapshotter per term as backup leader: each one resumes from the store's chain as the
 * previous leader (maybe another sidecar) left it.
 */
function backupDuties(config: Config, store: SnapStore, etcd: EtcdClient, observer: SnapshotObserver, log: Logger): DutyRunner<Snapshotter> {
  const settings: SnapshotterSettings = {
    fullSchedule: config.fullSnapshotSchedule,
    deltaPeriodMs: config.deltaSnapshotPeriod,
    deltaMemoryLimit: config.deltaSnapshotMemoryLimit,
    compression: config.compression as Compression,
    compressionLevel: config.compressionLevel,
    spoolDir: config.spoolDir || tmpdir(),
    retention: { policy: config.gcPolicy as GcPolicy, maxBackups: config.maxBackups },
    gcPeriodMs: config.gcPeriod,
    storeRetentionMs: config.storeRetention,
    restoreTimeObjectiveMs: config.restoreTimeObjective,
    fullMinIntervalMs: config.fullSnapshotMinInterval,
    replayRatesFile: replayRatesFile(config.dataDir, config.name),
  };
  const member = etcd.member(config.advertiseClientUrls[0] as string);
  const snapshotLog = log.child({ part: 'snapshot' });
  return new DutyRunner(
    () => new Snapshotter(settings, { store, member, memberName: config.name, log: snapshotLog, observer }),
    snapshotLog,
    (snapshotter, err) => {
      snapshotter.problem = err instanceof ForeignChainError ? err.message : `snapshotter not started: ${err.message}`;
    },
  );
}

/**
 * The --secondary-store's sync, with the store opened (no request yet: a second store that is down
 * never stops the sidecar from starting), or undefined when there is none.
 */
async function secondaryStore(
  config: Config,
  primary: SnapStore,
  parts: { leads: () => boolean; metrics: Metrics; log: Logger },
): Promise<{ start(): void; kick(): void; status: SecondarySync['status']; close(): Promise<void> } | undefined> {
  if (config.secondaryStore === '') return undefined;
  const store = await openStore({ ...config, store: config.secondaryStore });
  const sync = new SecondarySync(
    { primary, secondary: store, leads: parts.leads, log: parts.log.child({ part: 'secondary-store' }), observer: new SecondarySyncMetrics(parts.metrics.registry) },
    {
      periodMs: config.secondaryStorePeriod,
      storeRetentionMs: config.storeRetention,
      ...(config.gcPeriod > 0 ? { gc: { retention: { policy: config.gcPolicy as GcPolicy, maxBackups: config.maxBackups }, storeRetentionMs: config.storeRetention } } : {}),
    },
  );
  return {
    start: () => sync.start(),
    kick: () => sync.kick(),
    status: () => sync.status(),
    close: async () => {
      await sync.stop();
      await store.close();
    },
  };
}

/** What the snapshot routes may do: act through the running snapshotter, or say why there is none. */
function snapshotApi(config: Config, store: SnapStore, duties: DutyRunner<Snapshotter>, cluster: BackupLeadership, log: Logger): SnapshotApi {
  let compacting: Promise<SnapshotRecord> | undefined;
  const leading = (): Snapshotter => {
    const s = duties.current;
    if (!s) throw new Error('this sidecar is no longer the backup leader');
    return s;
  };
  return {
    unavailable: () => (duties.current ? duties.current.problem : cluster.whyNotLeading()),
    forwardTo: () => cluster.forwardTo(),
    deltasEnabled: config.deltaSnapshotPeriod > 0,
    takeFull: () => leading().requestFull('requested through the API'),
    takeDelta: () => leading().takeDelta(),
    compact: () => {
      leading();
      if (compacting) return Promise.reject(new CompactBusyError());
      compacting = compactChain({ store, log: log.child({ part: 'compact' }), ...compactOptionsFromConfig(config, tmpdir()) }).finally(() => {
        compacting = undefined;
      });
      return compacting;
    },
    list: () => listSnapshots(store),
    state: () => backupStateOf(duties.current),
  };
}

/**
 * Defragmentation rounds: on the schedule when this sidecar is the backup leader, or asked for
 * through the API; a round that defragmented a member is followed by a full snapshot (the next
 * restore starts from the compact db, not from the fragmented one).
 */
function defragmentation(
  config: Config,
  parts: { etcd: EtcdClient; monitor: MemberMonitor; metrics: Metrics; duties: DutyRunner<Snapshotter>; cluster: BackupLeadership; log: Logger },
): { api: DefragApi; schedule: DefragSchedule; nospace: NospaceRecovery | undefined } {
  const { etcd, monitor, metrics, duties, cluster } = parts;
  const log = parts.log.child({ part: 'defrag' });
  const defragmenter = new Defragmenter(
    {
      clusterStatus: () => monitor.check(),
      probe: (url) => probeEndpoint(etcd, url, etcd.memberTimeoutMs),
      defragment: (url, timeoutMs) => defragmentMember(etcd.member(url), timeoutMs),
      log,
      observer: new DefragMetrics(metrics.registry),
    },
    { thresholdPercent: config.defragThreshold, timeoutMs: config.defragTimeout, recoverTimeoutMs: config.defragTimeout },
  );
  const round = async (reason: string, member?: string, cure?: { alarm: string }): Promise<DefragReport> => {
    const report = await defragmenter.run(reason, member, cure);
    if (report.members.some((m) => m.outcome === 'defragmented')) {
      duties.current?.requestFull('after defragmentation').catch((err: Error) => log.warn({ err: err.message }, 'the full snapshot after defragmentation failed'));
    }
    return report;
  };
  const leads = (): boolean => cluster.role === 'leader';
  const nospace = config.autoRecoverNospace
    ? new NospaceRecovery(
        {
          leads,
          compact: (revision) => compactHistory(etcd.etcd, revision, config.defragTimeout),
          defragment: () => round('NOSPACE recovery', undefined, { alarm: NOSPACE }),
          alarms: () => listAlarms(etcd.etcd, etcd.memberTimeoutMs),
          disarm: (memberId) => disarmNospace(etcd.etcd, memberId, etcd.memberTimeoutMs),
          log,
        },
        { retainedRevisions: config.nospaceRetainedRevisions, retryAfterMs: 60_000 },
      )
    : undefined;
  const api: DefragApi = {
    unavailable: () => (cluster.role === 'leader' ? undefined : `defragmentation is run by the backup leader's sidecar: ${cluster.whyNotLeading()}`),
    forwardTo: () => cluster.forwardTo(),
    run: (member) => round('requested through the API', member),
    status: () => ({
      running: defragmenter.isRunning,
      schedule: config.defragSchedule,
      lastByMember: [...defragmenter.lastByMember.values()],
      ...(defragmenter.lastReport ? { lastRound: defragmenter.lastReport } : {}),
      ...(nospace?.lastOutcome ? { nospaceRecovery: nospace.lastOutcome } : {}),
    }),
  };
  return { api, schedule: new DefragSchedule(config.defragSchedule, leads, (reason) => round(reason), log), nospace };
}
