// The facts the initializer decides from (docs/architecture.md, "Initializer and recovery"), gathered in parallel, each bounded: the data dir, the running
// cluster, the heartbeats and the backups. No decision is made here; `decide()` makes it.

import type { Config } from '../config/index.js';
import type { EtcdClient } from '../etcd/client.js';
import { inspectDataDir } from '../etcd/datadir.js';
import { clusterStatus, type ClusterStatus } from '../etcd/status.js';
import type { Logger } from '../logger.js';
import { readHeartbeats, type Heartbeat } from '../cluster/heartbeat.js';
import type { HeartbeatAges, SeenHeartbeat } from '../cluster/heartbeat-ages.js';
import { finishInterruptedSwap } from '../restore/index.js';
import { restorableChain } from '../snapshot/chain.js';
import { listSnapshots } from '../snapshot/snapshotter.js';
import type { SnapStore } from '../snapstore/index.js';
import type { Member } from '../etcd/members.js';
import { readClaim } from './claim.js';
import type { BackupFacts, ClusterMember, InitFacts, LocalData, MemberRecord, RunningCluster } from './decide.js';

export interface FactSources {
  config: Config;
  etcd: EtcdClient;
  store: SnapStore;
  log: Logger;
  /** Judges heartbeat freshness by this process's clock (shared with the election). */
  ages: HeartbeatAges;
}

/** The facts, plus what the actions need beyond them (the leader's endpoint, the raw status). */
export interface GatheredFacts {
  facts: InitFacts;
  status: ClusterStatus;
  heartbeats: Heartbeat[];
}

export const clusterMember = (m: Member): ClusterMember => ({ id: m.id, name: m.name, peerURLs: m.peerURLs, learner: m.isLearner, started: m.started });

/** A cluster answers when any configured endpoint (other than ours, which is not running) reports a cluster ID. */
export function runningCluster(status: ClusterStatus): RunningCluster | undefined {
  if (!status.clusterId) return undefined;
  return {
    clusterId: status.clusterId,
    hasQuorum: status.hasQuorum && status.leader !== undefined,
    members: status.members.filter((m) => m.id !== '').map(clusterMember),
  };
}

/** The running cluster alone (one bounded fan-out), for steps that need nothing else afresh. */
export async function clusterNow(src: Pick<FactSources, 'etcd' | 'config'>): Promise<{ status: ClusterStatus; cluster: RunningCluster | undefined }> {
  const status = await clusterStatus(src.etcd, src.etcd.memberTimeoutMs, src.config.endpoints);
  return { status, cluster: runningCluster(status) };
}

export function memberRecord(hb: SeenHeartbeat, ttlMs: number): MemberRecord {
  const record: MemberRecord = { name: hb.name, etcdUp: hb.etcdUp, live: hb.ageMs <= ttlMs };
  if (hb.memberId !== undefined) record.memberId = hb.memberId;
  if (hb.clusterId !== undefined) record.clusterId = hb.clusterId;
  if (hb.raftIndex !== undefined) record.raftIndex = hb.raftIndex;
  if (hb.inQuorum !== undefined) record.inQuorum = hb.inQuorum;
  if (hb.waiting !== undefined) record.waiting = hb.waiting;
  return record;
}

async function backupFacts(store: SnapStore): Promise<BackupFacts> {
  const listing = await listSnapshots(store);
  const chain = restorableChain(listing);
  if (!chain.full) return { anySnapshot: listing.length > 0 };
  const head = await store.head(chain.full.name);
  const clusterId = head?.metadata?.['ebs-cluster-id'];
  return { anySnapshot: true, chain: { lastRevision: chain.lastRevision, ...(clusterId ? { clusterId } : {}), ...(chain.contiguous ? {} : { gaps: chain.gaps }) } };
}

async function localData(dataDir: string, log: Logger): Promise<LocalData> {
  // A crash in the middle of a restore's swap is settled first, so the data dir is whole.
  const settled = await finishInterruptedSwap(dataDir);
  if (settled !== 'none') log.warn({ dataDir, settled }, 'settled an interrupted restore of the data dir');
  const d = await inspectDataDir(dataDir);
  const local: LocalData = { state: d.state, reason: d.reason };
  if (d.memberId !== undefined) local.memberId = d.memberId;
  if (d.clusterId !== undefined) local.clusterId = d.clusterId;
  if (d.raftIndex !== undefined) local.raftIndex = d.raftIndex;
  if (d.revision !== undefined) local.revision = d.revision;
  if (d.consistentIndex !== undefined) local.consistentIndex = d.consistentIndex;
  return local;
}

/**
 * Every fact at once. The data dir and the running cluster are this host's and etcd's; the rest
 * lives in the object store, and a store that does not answer must not keep etcd from starting
 * where no store fact is needed (valid data in a running cluster with quorum): its failure becomes
 * `storeError` and `decide()` makes only the decisions that need none of them.
 */
export async function gatherFacts(src: FactSources): Promise<GatheredFacts> {
  const { config, etcd, store, log } = src;
  const [local, { status, cluster }, fromStore] = await Promise.all([
    localData(config.dataDir, log),
    clusterNow({ etcd, config }),
    Promise.all([readHeartbeats(store, log), backupFacts(store), readClaim(store)]).then(
      ([heartbeats, backups, recovery]) => ({ heartbeats, backups, recovery }),
      (err: Error) => ({ error: err.message }),
    ),
  ]);
  const facts: InitFacts = {
    self: { name: config.name, peerURLs: config.initialAdvertisePeerUrls },
    initialCluster: config.initialCluster,
    restoreLeader: config.restoreLeader,
    maxLearners: config.maxLearners,
    local,
    heartbeats: [],
    backups: { anySnapshot: false },
  };
  let heartbeats: SeenHeartbeat[] = [];
  if ('error' in fromStore) facts.storeError = fromStore.error;
  else {
    heartbeats = src.ages.observe(fromStore.heartbeats);
    facts.heartbeats = heartbeats.map((hb) => memberRecord(hb, config.heartbeatTtl));
    facts.backups = fromStore.backups;
    if (fromStore.recovery.claim) facts.recovery = fromStore.recovery;
  }
  if (cluster) facts.cluster = cluster;
  return { facts, status, heartbeats };
}
