/**
 * The contract between the HTTP layer and the rest of the sidecar: what the routes may call. The
 * composition root (src/sidecar.ts) builds it; the routes parse, call it, and map its errors.
 */
import type { LeadershipView } from '../cluster/backup-leadership.js';
import type { DefragReport, MemberDefrag } from '../defrag/defragmenter.js';
import type { InitStatus } from '../initializer/initializer.js';
import type { ClusterStatus, EndpointStatus } from '../etcd/status.js';
import type { BackupState } from '../snapshot/backup-state.js';
import type { SnapshotRef } from '../snapshot/names.js';
import type { SnapshotRecord } from '../snapshot/record.js';
import type { SecondarySyncState } from '../snapshot/secondary-sync.js';
import type { StoreHealth } from '../snapstore/index.js';
import type { Metrics } from './metrics.js';

export type { BackupState } from '../snapshot/backup-state.js';

/** What the routes need from the rest of the sidecar; the server holds no etcd logic of its own. */
export interface ServerDeps {
  self: { name: string; clientURLs: string[] };
  /** A fresh health round over every member. */
  clusterStatus(): Promise<ClusterStatus>;
  /** The local member's own status. */
  probeSelf(): Promise<EndpointStatus>;
  /** Client URLs the etcd client balances over. */
  endpoints(): string[];
  /** The last store probe, if one finished yet. */
  storeHealth(): StoreHealth | undefined;
  metrics: Metrics;
  snapshots: SnapshotApi;
  /** Absent when the sidecar runs without defragmentation (tests of other parts). */
  defrag?: DefragApi;
  /** Backup-leader election and heartbeats, for `/status` (absent: role unknown). */
  cluster?: () => LeadershipView;
  /** Absent when the sidecar runs without an initializer (tests of other parts). */
  initializer?: InitializeApi;
  /** The --secondary-store's sync, when there is one. */
  secondaryStore?: () => SecondarySyncState;
}

/** The snapshot routes' view of the snapshotter and the store. */
export interface SnapshotApi {
  /** Why this sidecar cannot take a snapshot now (not the backup leader), or undefined. */
  unavailable(): string | undefined;
  /** The backup leader's sidecar to forward snapshot requests to, when this one is not the leader. */
  forwardTo?(): { url: string; name: string } | undefined;
  readonly deltasEnabled: boolean;
  /** A full snapshot that starts after the call (a running one is waited for; concurrent calls share the next). */
  takeFull(): Promise<SnapshotRecord>;
  /** The latest chain compacted into a new full snapshot at its last revision (restore/compact.ts). */
  compact(): Promise<SnapshotRecord>;
  /** Undefined when there was nothing new to upload. */
  takeDelta(): Promise<SnapshotRecord | undefined>;
  /** Every snapshot in the store (readable on any member). */
  list(): Promise<SnapshotRef[]>;
  /** What `/status` shows of the snapshotting. */
  state(): BackupState;
}

/** A request only the backup leader's sidecar serves: relayed to it by a follower (server/forward.ts). */
export interface LeaderOnlyApi {
  /** Why this sidecar cannot serve it now (not the backup leader), or undefined. */
  unavailable(): string | undefined;
  /** The backup leader's sidecar to forward to, when this one is not the leader. */
  forwardTo?(): { url: string; name: string } | undefined;
}

/** Defragmentation rounds (src/defrag/), run by the backup leader's sidecar. */
export interface DefragApi extends LeaderOnlyApi {
  /** One round now; rejects with DefragBusyError or DefragRefusedError. */
  run(member?: string): Promise<DefragReport>;
  status(): { running: boolean; schedule: string; lastByMember: MemberDefrag[]; lastRound?: DefragReport; nospaceRecovery?: { at: string; members: string[]; cleared: boolean; detail: string } };
}

/** What the routes need of the initializer. */
export interface InitializeApi {
  start(): Promise<InitStatus>;
  status(): InitStatus;
  etcdConfig(): string | undefined;
}
