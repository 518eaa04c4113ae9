import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SnapshotKind } from '../snapshot/names.js';
import type { SnapshotObserver, SnapshotRecord } from '../snapshot/record.js';
import type { Chain } from '../snapshot/chain.js';
import type { GcLockView } from '../snapshot/gc-locks.js';
import type { ClusterStatus, MemberHealth } from '../etcd/status.js';
import { ALARM_TYPES, clusterAlarms } from '../etcd/alarms.js';
import type { SeenHeartbeat } from '../cluster/heartbeat-ages.js';
import type { LeadershipObserver } from '../cluster/backup-leadership.js';
import type { Role } from '../cluster/role.js';

const PREFIX = 'etcd_backup_sidecar_';

/** The backup leader's view of the store's latest chain. */
interface ChainView {
  /** Object name of the chain's full snapshot ('' when the store has none). */
  full: string;
  contiguous: boolean;
  lastRevision: number;
  deltas: number;
}

interface DeltaProgress {
  uploadedRevision: number;
  etcdRevision: number;
  bufferedBytes: number;
}

/** The sidecar's Prometheus registry: process metrics plus what it knows of each member. */
export class Metrics implements SnapshotObserver, LeadershipObserver {
  readonly registry = new Registry();
  private readonly memberHealthy: Gauge<'member' | 'member_id'>;
  private readonly memberReachable: Gauge<'member' | 'member_id'>;
  private readonly memberIsLeader: Gauge<'member' | 'member_id'>;
  private readonly memberIsLearner: Gauge<'member' | 'member_id'>;
  private readonly memberDbSize: Gauge<'member' | 'member_id'>;
  private readonly memberRevision: Gauge<'member' | 'member_id'>;
  private readonly memberProbeSeconds: Gauge<'member' | 'member_id'>;
  private readonly memberAlarm: Gauge<'member' | 'member_id' | 'alarm'>;
  private readonly clusterHasQuorum: Gauge;
  private readonly lastCheck: Gauge;
  private readonly snapshotDuration: Histogram<'kind'>;
  private readonly snapshotSize: Gauge<'kind'>;
  private readonly snapshotRevision: Gauge<'kind'>;
  private readonly snapshotTimestamp: Gauge<'kind'>;
  private readonly snapshotFailures: Counter<'kind'>;
  private readonly snapshotsTotal: Counter<'kind'>;
  private readonly snapshotPeriod: Gauge<'kind'>;
  /** Newest snapshot time per kind, in seconds: the timestamp gauge only moves forward. */
  private readonly newest = new Map<SnapshotKind, number>();
  private readonly chainContiguous: Gauge<'full'>;
  private readonly chainLastRevision: Gauge<'full'>;
  private readonly chainDeltas: Gauge<'full'>;
  private readonly heldByLock: Gauge;
  /** The latest chain as last read from the store and extended by this sidecar's uploads since. */
  private chain: ChainView | undefined;
  private leaderKnown: (() => boolean) | undefined;
  private deltaProgress: (() => DeltaProgress | undefined) | undefined;
  private restoreEstimate: (() => number | undefined) | undefined;
  private readonly backupRole: Gauge<'role'>;
  private readonly roleChanges: Counter<'role'>;
  private readonly heartbeatAge: Gauge<'member'>;
  private heartbeats: { list: readonly SeenHeartbeat[]; readAtMs: number } = { list: [], readAtMs: 0 };

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const labels = ['member', 'member_id'] as const;
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> => new Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
    this.memberHealthy = gauge('member_healthy', '1 when the member answered its status probe, knows a leader and reports no alarm', labels);
    this.memberReachable = gauge('member_reachable', '1 when the member answered its status probe before the deadline', labels);
    this.memberIsLeader = gauge('member_is_leader', '1 for the etcd raft leader', labels);
    this.memberIsLearner = gauge('member_is_learner', '1 for a learner (non-voting) member', labels);
    this.memberDbSize = gauge('member_db_size_bytes', 'physically allocated size of the member database', labels);
    this.memberRevision = gauge('member_revision', 'latest revision the member reported', labels);
    this.memberProbeSeconds = gauge('member_probe_seconds', 'how long the last status probe of the member took', labels);
    this.memberAlarm = gauge('member_alarm', `1 while etcd's alarm (${ALARM_TYPES.join(', ')}) is raised for the member, 0 otherwise`, [...labels, 'alarm']);
    this.clusterHasQuorum = gauge('cluster_has_quorum', '1 when more than half of the voting members are healthy', []);
    this.lastCheck = gauge('member_check_timestamp_seconds', 'when the member health was last checked', []);
    const kind = ['kind'] as const;
    this.snapshotDuration = new Histogram({
      name: PREFIX + 'snapshot_duration_seconds',
      help: 'time to take and upload a snapshot',
      labelNames: kind,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [this.registry],
    });
    this.snapshotSize = gauge('snapshot_size_bytes', 'stored size of the latest snapshot of each kind', kind);
    this.snapshotRevision = gauge('snapshot_latest_revision', 'last revision of the latest snapshot of each kind', kind);
    this.snapshotTimestamp = gauge(
      'snapshot_latest_timestamp_seconds',
      "when the latest snapshot of each kind was uploaded (by this sidecar, or as the store's latest chain says when it took over as backup leader)",
      kind,
    );
    this.snapshotPeriod = gauge('snapshot_period_seconds', "how often snapshots of each kind are due: the full schedule's period, --delta-snapshot-period (0: deltas are off)", kind);
    this.snapshotFailures = new Counter({ name: PREFIX + 'snapshot_failures_total', help: 'snapshots that failed (each failed upload attempt counts)', labelNames: kind, registers: [this.registry] });
    this.snapshotsTotal = new Counter({ name: PREFIX + 'snapshots_total', help: 'snapshots uploaded', labelNames: kind, registers: [this.registry] });
    // Read when scraped, from the delta snapshotter's own counters.
    const fromDeltas = (name: string, help: string, read: (p: DeltaProgress) => number): void => {
      const source = (): DeltaProgress | undefined => this.deltaProgress?.();
      new Gauge({
        name: PREFIX + name,
        help,
        registers: [this.registry],
        collect() {
          const p = source();
          // Reset, not left at the last value, once this sidecar stops taking snapshots: a former
          // leader's stale lag would keep an alert firing.
          if (p) this.set(read(p));
          else this.reset();
        },
      });
    };
    fromDeltas('delta_revision_lag', "etcd's revision minus the last revision uploaded in a delta snapshot (while this sidecar takes snapshots)", (p) =>
      Math.max(0, p.etcdRevision - p.uploadedRevision),
    );
    fromDeltas('delta_buffered_bytes', 'bytes of events collected for the next delta snapshot', (p) => p.bufferedBytes);
    const estimate = (): number | undefined => this.restoreEstimate?.();
    new Gauge({
      name: PREFIX + 'restore_estimate_seconds',
      help: "estimated time a restore of the store's chain would take now (full snapshot plus its deltas at this member's measured replay rate), while this sidecar takes snapshots",
      registers: [this.registry],
      collect() {
        const seconds = estimate();
        // No snapshotter (a follower) or no chain yet: no figure rather than a stale one.
        if (seconds === undefined) this.reset();
        else this.set(seconds);
      },
    });
    this.backupRole = gauge('backup_role', "1 for this sidecar's current backup role (leader, follower or unknown), 0 for the others", ['role']);
    for (const role of ['leader', 'follower', 'unknown']) this.backupRole.set({ role }, role === 'unknown' ? 1 : 0);
    const known = (): boolean | undefined => this.leaderKnown?.();
    new Gauge({
      name: PREFIX + 'backup_leader_known',
      help: '1 when this sidecar is the backup leader or knows a live one from the heartbeats (and so can forward snapshot requests), 0 otherwise',
      registers: [this.registry],
      collect() {
        const k = known();
        if (k !== undefined) this.set(k ? 1 : 0);
      },
    });
    // Labelled by the chain's full snapshot so that a sidecar that is not the backup leader has no
    // series at all: prom-client shows an unlabelled gauge as 0 even once reset, and a follower's 0
    // would read as a gap.
    const chainHelp = "on the backup leader, the store's latest chain (by its full snapshot), read at the start of its term and by each retention run, extended by its own uploads: ";
    this.chainContiguous = gauge('chain_contiguous', chainHelp + '1 when no revision is missing between the full snapshot and the newest delta', ['full']);
    this.chainLastRevision = gauge('chain_last_revision', chainHelp + 'the revision a restore of it reaches', ['full']);
    this.chainDeltas = gauge('chain_deltas', chainHelp + 'the deltas a restore of it applies after the full snapshot', ['full']);
    this.heldByLock = new Gauge({
      name: PREFIX + 'snapshots_held_by_lock',
      help: 'on the backup leader, snapshots its last retention run would have deleted but a lock (--store-retention: S3 Object Lock, GCS object retention) or a refused delete holds, with the full snapshots held to keep their deltas restorable',
      registers: [this.registry],
    });
    this.roleChanges = new Counter({ name: PREFIX + 'backup_role_changes_total', help: 'backup role changes of this sidecar, by the role taken', labelNames: ['role'], registers: [this.registry] });
    const heartbeats = this.heartbeats;
    this.heartbeatAge = new Gauge({
      name: PREFIX + 'heartbeat_age_seconds',
      help: "time since this sidecar last saw each member's heartbeat change in the store, by its own clock, when scraped",
      labelNames: ['member'],
      registers: [this.registry],
      collect() {
        this.reset();
        const since = performance.now() - heartbeats.readAtMs;
        for (const hb of heartbeats.list) this.set({ member: hb.name }, (hb.ageMs + since) / 1000);
      },
    });
  }

  /** Where the revision-lag and buffer gauges read from, once this sidecar takes snapshots. */
  followDeltas(progress: () => DeltaProgress | undefined): void {
    this.deltaProgress = progress;
  }

  /** Where the backup-leader gauge reads from: whether this sidecar leads or knows who does. */
  followLeadership(known: () => boolean): void {
    this.leaderKnown = known;
  }

  /** The periods the snapshot-age alerts count in; 0 for deltas when they are off. */
  snapshotPeriods(fullMs: number, deltaMs: number): void {
    this.snapshotPeriod.set({ kind: 'full' }, fullMs / 1000);
    this.snapshotPeriod.set({ kind: 'delta' }, deltaMs / 1000);
  }

  /** Where the restore-estimate gauge reads from. */
  followRestoreEstimate(seconds: () => number | undefined): void {
    this.restoreEstimate = seconds;
  }

  uploaded(record: SnapshotRecord): void {
    const labels = { kind: record.kind };
    this.snapshotDuration.observe(labels, record.durationMs / 1000);
    this.snapshotSize.set(labels, record.size);
    this.snapshotRevision.set(labels, record.lastRevision);
    this.advance(record.kind, Date.now() / 1000);
    this.snapshotsTotal.inc(labels);
    // A full snapshot starts a chain; a delta extends one that it continues. Gaps are judged from
    // the store's listing only: a listing that raced an upload may miss it, and the next delta would
    // then look like it skipped revisions that are in fact stored.
    const c = this.chain;
    if (record.kind === 'full') this.setChain({ full: record.name, contiguous: true, lastRevision: record.lastRevision, deltas: 0 });
    else if (c && record.startRevision <= c.lastRevision + 1 && record.lastRevision > c.lastRevision) this.setChain({ ...c, lastRevision: record.lastRevision, deltas: c.deltas + 1 });
  }

  chainRead(chain: Chain): void {
    const last = chain.links.at(-1)?.delta ?? chain.full;
    if (chain.full) this.advance('full', chain.full.createdAt.getTime() / 1000);
    if (last?.kind === 'delta') this.advance('delta', last.createdAt.getTime() / 1000);
    this.setChain({ full: chain.full?.name ?? '', contiguous: chain.full !== undefined && chain.contiguous, lastRevision: chain.lastRevision, deltas: chain.links.length });
  }

  gcRan(view: GcLockView): void {
    this.heldByLock.set(view.lockedUntil.length);
  }

  private setChain(chain: ChainView | undefined): void {
    this.chain = chain;
    for (const g of [this.chainContiguous, this.chainLastRevision, this.chainDeltas]) g.reset();
    if (!chain) return;
    const labels = { full: chain.full };
    this.chainContiguous.set(labels, chain.contiguous ? 1 : 0);
    this.chainLastRevision.set(labels, chain.lastRevision);
    this.chainDeltas.set(labels, chain.deltas);
  }

  private advance(kind: SnapshotKind, seconds: number): void {
    if (seconds <= (this.newest.get(kind) ?? 0)) return;
    this.newest.set(kind, seconds);
    this.snapshotTimestamp.set({ kind }, seconds);
  }

  failed(kind: SnapshotKind): void {
    this.snapshotFailures.inc({ kind });
  }

  roleChanged(role: Role, previous: Role): void {
    this.backupRole.set({ role: previous }, 0);
    this.backupRole.set({ role }, 1);
    this.roleChanges.inc({ role });
    // Only the backup leader knows the chain; a former leader's view would go stale unseen.
    if (previous === 'leader') this.setChain(undefined);
  }

  heartbeatsRead(heartbeats: readonly SeenHeartbeat[]): void {
    this.heartbeats.list = heartbeats;
    this.heartbeats.readAtMs = performance.now();
  }

  recordClusterStatus(status: ClusterStatus): void {
    for (const g of [this.memberHealthy, this.memberReachable, this.memberIsLeader, this.memberIsLearner, this.memberDbSize, this.memberRevision, this.memberProbeSeconds, this.memberAlarm]) g.reset();
    const alarms = clusterAlarms(status);
    for (const m of status.members) {
      const labels = { member: memberLabel(m), member_id: m.id };
      // Every alarm type of every member, 0 when not raised: an alert on `== 1` then has a series to
      // watch, and a dashboard shows the zeros.
      for (const alarm of ALARM_TYPES) this.memberAlarm.set({ ...labels, alarm }, 0);
      this.memberHealthy.set(labels, m.healthy ? 1 : 0);
      this.memberReachable.set(labels, m.status?.reachable ? 1 : 0);
      this.memberIsLeader.set(labels, m.isLeader ? 1 : 0);
      this.memberIsLearner.set(labels, m.isLearner ? 1 : 0);
      if (m.status?.dbSize !== undefined) this.memberDbSize.set(labels, m.status.dbSize);
      if (m.status?.revision !== undefined) this.memberRevision.set(labels, m.status.revision);
      if (m.status) this.memberProbeSeconds.set(labels, m.status.latencyMs / 1000);
    }
    // An alarm for a member the list does not name (removed since) still shows, under its ID.
    for (const a of alarms) {
      const m = status.members.find((x) => x.id === a.memberId);
      this.memberAlarm.set({ member: m ? memberLabel(m) : a.memberId, member_id: a.memberId, alarm: a.alarm }, 1);
    }
    this.clusterHasQuorum.set(status.hasQuorum ? 1 : 0);
    this.lastCheck.set(Date.parse(status.checkedAt) / 1000);
  }
}

/** A member's name, or what identifies one not started yet (no name until it starts). */
function memberLabel(m: MemberHealth): string {
  return m.name || m.clientURLs[0] || m.id;
}
