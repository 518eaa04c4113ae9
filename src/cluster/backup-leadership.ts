import type { Config } from '../config/index.js';
import type { EtcdClient } from '../etcd/client.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { HeartbeatDirectory, HeartbeatWriter, leaderHeartbeat, type Heartbeat, type HeartbeatFacts } from './heartbeat.js';
import type { Duty, DutyRunner } from './duty-runner.js';
import { checkOwnMember, promoteOwnLearner, type Check, type MemberFacts } from './own-member.js';
import { RoleLoop } from './role-loop.js';
import type { HeartbeatAges, SeenHeartbeat } from './heartbeat-ages.js';
import { effectiveRole, shouldStandIn, type Role } from './role.js';

export type SnapshotLeaderMode = 'elect' | 'always' | 'never';

/** What the metrics learn from the election (kept as an interface: cluster/ does not import server/). */
export interface LeadershipObserver {
  roleChanged(role: Role, previous: Role): void;
  heartbeatsRead(heartbeats: readonly SeenHeartbeat[]): void;
}

/** What `GET /status` shows of the election. */
export interface LeadershipView {
  role: Role;
  reason: string;
  mode: SnapshotLeaderMode;
  roleChanges: number;
  /** The backup leader as the heartbeats announce it (this sidecar when it leads). */
  backupLeader?: { name: string; apiURL: string; memberId?: string };
  apiURL: string;
  heartbeats: (Heartbeat & { ageSeconds: number; stale: boolean })[];
  heartbeatError?: string;
}

export interface LeadershipDeps {
  etcd: EtcdClient;
  store: SnapStore;
  metrics: LeadershipObserver;
  duties: Pick<DutyRunner<Duty>, 'lead' | 'stepDown'>;
  log: Logger;
  /** Shared with the initializer, so both judge heartbeats by the same observations. */
  ages: HeartbeatAges;
}

/**
 * The backup election of this sidecar: the role loop, and what depends on the role wired to it:
 * the snapshotters (started and stopped beside the loop, never awaited by it), the heartbeat
 * (rewritten at once on a role change so followers learn the new leader's API URL within one
 * directory refresh) and the learner's promotion.
 */
export class BackupLeadership {
  readonly roles: RoleLoop;
  readonly heartbeat: HeartbeatWriter;
  readonly directory: HeartbeatDirectory;
  private readonly log: Logger;
  private readonly startedAt = performance.now();
  private apiURL = '';
  private promoting = false;

  constructor(
    private readonly config: Config,
    private readonly mode: SnapshotLeaderMode,
    private readonly deps: LeadershipDeps,
  ) {
    this.log = deps.log.child({ part: 'leader' });
    const member = deps.etcd.member(config.advertiseClientUrls[0] as string);
    this.directory = new HeartbeatDirectory(deps.store, { periodMs: config.heartbeatPeriod, log: this.log, ages: deps.ages, onRead: (hbs) => deps.metrics.heartbeatsRead(hbs) });
    this.heartbeat = new HeartbeatWriter(deps.store, () => this.heartbeatFacts(), { periodMs: config.heartbeatPeriod, log: this.log });
    this.roles = new RoleLoop(
      () => checkOwnMember(member, config.leaderCheckPeriod, (f) => this.standsIn(f)),
      { periodMs: config.leaderCheckPeriod, lostAfter: config.leaderLostAfter, log: this.log },
      (elected, previous) => this.roleChanged(elected, previous),
      (check) => this.checked(check),
    );
  }

  /** The role this sidecar acts on: the elected one, or what --snapshot-leader forces. */
  get role(): Role {
    return effectiveRole(this.mode, this.roles.role);
  }

  start(apiURL: string): void {
    this.apiURL = apiURL;
    if (this.mode === 'always') {
      this.deps.metrics.roleChanged('leader', 'unknown');
      this.deps.duties.lead();
    }
    // The loop runs in every mode: it reports the member in the heartbeat and promotes a learner,
    // whether or not this sidecar takes snapshots.
    this.roles.start();
    this.heartbeat.start();
    this.directory.start();
  }

  async stop(): Promise<void> {
    this.roles.stop();
    this.directory.stop();
    await Promise.all([this.heartbeat.stop(), this.deps.duties.stepDown()]);
  }

  /** The leader's sidecar, when this one is not the leader and a live leader is known. */
  forwardTo(): { url: string; name: string } | undefined {
    if (this.role === 'leader') return undefined;
    const hb = this.leaderBeat();
    return hb ? { url: hb.apiURL, name: hb.name } : undefined;
  }

  /** Why this sidecar takes no snapshots now. */
  whyNotLeading(): string {
    if (this.mode === 'never') return 'this sidecar does not take snapshots (--snapshot-leader=never) and no backup leader is known';
    if (this.role === 'leader') return 'the snapshotter is starting';
    return `this sidecar is not the backup leader (role ${this.role}: ${this.roles.current.reason}) and no backup leader is known from the heartbeats`;
  }

  view(): LeadershipView {
    const { mode, roles, config } = this;
    const v: LeadershipView = {
      role: this.role,
      reason: mode === 'elect' ? roles.current.reason : mode === 'always' ? 'the election is off: --snapshot-leader=always' : `--snapshot-leader=never; election: ${roles.current.reason}`,
      mode,
      roleChanges: roles.changes,
      apiURL: this.apiURL,
      heartbeats: this.directory.latest().map(({ ageMs, ...h }) => ({ ...h, ageSeconds: Math.round(ageMs / 100) / 10, stale: ageMs > config.heartbeatTtl })),
    };
    if (this.role === 'leader') v.backupLeader = { name: config.name, apiURL: this.apiURL, ...(roles.facts ? { memberId: roles.facts.memberId } : {}) };
    else {
      const hb = this.leaderBeat();
      if (hb) v.backupLeader = { name: hb.name, apiURL: hb.apiURL, ...(hb.memberId ? { memberId: hb.memberId } : {}) };
    }
    const err = this.heartbeat.lastError ?? this.directory.lastError;
    if (err) v.heartbeatError = err;
    return v;
  }

  private leaderBeat(): SeenHeartbeat | undefined {
    return leaderHeartbeat(this.directory.latest(), this.config.heartbeatTtl, this.roles.current.leaderId, this.config.name);
  }

  private heartbeatFacts(): HeartbeatFacts {
    const f: MemberFacts | undefined = this.roles.facts;
    const up = this.roles.etcdUp;
    const hb: HeartbeatFacts = { name: this.config.name, role: this.role, apiURL: this.apiURL, etcdUp: up, backsUp: this.mode !== 'never' };
    // The elected role, not the announced one: an `always` sidecar leads whatever its etcd says.
    if (up) hb.inQuorum = this.roles.role !== 'unknown';
    if (f) {
      hb.memberId = f.memberId;
      hb.clusterId = f.clusterId;
      hb.learner = f.learner;
      // Only what the member said at the last check: a stale revision would tell the initializer a
      // member is further than it may be.
      if (up) {
        hb.revision = f.revision;
        hb.raftIndex = f.raftIndex;
      }
    }
    return hb;
  }

  /** Whether this member backs up for a raft leader whose sidecar is silent or never backs up. */
  private standsIn(f: MemberFacts): boolean {
    if (this.mode !== 'elect') return false;
    return shouldStandIn({
      self: this.config.name,
      leaderId: f.leaderId,
      beats: this.directory.latest().map((h) => ({
        name: h.name,
        ...(h.memberId ? { memberId: h.memberId } : {}),
        ...(h.learner ? { learner: true } : {}),
        ...(h.backsUp === false ? { backsUp: false } : {}),
        etcdUp: h.etcdUp,
        ageMs: h.ageMs,
      })),
      ttlMs: this.config.heartbeatTtl,
      runningMs: performance.now() - this.startedAt,
      directoryRead: this.directory.readAt !== undefined,
    });
  }

  private roleChanged(elected: Role, previousElected: Role): void {
    const now = effectiveRole(this.mode, elected);
    const before = effectiveRole(this.mode, previousElected);
    if (now === before) return;
    this.deps.metrics.roleChanged(now, before);
    if (now === 'leader') this.deps.duties.lead();
    else if (before === 'leader') void this.deps.duties.stepDown();
    if (this.apiURL !== '') void this.heartbeat.writeNow().catch(() => {});
  }

  private checked(check: Check): void {
    if (check.facts?.learner) this.promote(check.facts);
  }

  private promote(f: MemberFacts): void {
    if (this.promoting || f.leaderId === '0') return;
    this.promoting = true;
    promoteOwnLearner(this.deps.etcd, f, this.deps.etcd.memberTimeoutMs)
      .then((done) => {
        if (done) this.log.info({ memberId: f.memberId, leader: f.leaderId }, 'learner promoted to voting member');
        else this.log.debug('learner not in sync with the leader yet; promotion retried at a later check');
      })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'learner promotion failed; retried at a later check'))
      .finally(() => {
        this.promoting = false;
      });
  }
}
