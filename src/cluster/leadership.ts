import type { Config } from '../config/index.js';
import type { EtcdClient } from '../etcd/client.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { HeartbeatDirectory, HeartbeatWriter, leaderHeartbeat, type Heartbeat, type HeartbeatFacts } from './heartbeat.js';
import { checkOwnMember, promoteOwnLearner, RoleLoop, type Duty, type DutyRunner, type MemberFacts } from './leader.js';
import { HeartbeatAges, type SeenHeartbeat } from './heartbeat-ages.js';
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

export interface BackupLeadership {
  start(apiURL: string): void;
  stop(): Promise<void>;
  readonly role: Role;
  readonly roles: RoleLoop;
  readonly heartbeat: HeartbeatWriter;
  readonly directory: HeartbeatDirectory;
  /** The leader's sidecar, when this one is not the leader and a live leader is known. */
  forwardTo(): { url: string; name: string } | undefined;
  /** Why this sidecar takes no snapshots now. */
  whyNotLeading(): string;
  view(): LeadershipView;
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
 * Wires the role loop to what depends on the role: the snapshotters (started and stopped beside the
 * loop, never awaited by it), the heartbeat (rewritten at once on a role change so followers learn
 * the new leader's API URL within one directory refresh) and the learner's promotion.
 */
export function startBackupLeadership(config: Config, mode: SnapshotLeaderMode, deps: LeadershipDeps): BackupLeadership {
  const log = deps.log.child({ part: 'leader' });
  const member = deps.etcd.member(config.advertiseClientUrls[0] as string);
  let apiURL = '';
  let promoting = false;
  const startedAt = performance.now();

  const directory = new HeartbeatDirectory(deps.store, { periodMs: config.heartbeatPeriod, log, ages: deps.ages, onRead: (hbs) => deps.metrics.heartbeatsRead(hbs) });
  const facts = (): HeartbeatFacts => {
    const f: MemberFacts | undefined = roles.facts;
    const up = roles.etcdUp;
    const hb: HeartbeatFacts = { name: config.name, role: effectiveRole(mode, roles.role), apiURL, etcdUp: up, backsUp: mode !== 'never' };
    // The elected role, not the announced one: an `always` sidecar leads whatever its etcd says.
    if (up) hb.inQuorum = roles.role !== 'unknown';
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
  };
  const heartbeat = new HeartbeatWriter(deps.store, facts, { periodMs: config.heartbeatPeriod, log });

  const promote = (f: MemberFacts): void => {
    if (promoting || f.leaderId === '0') return;
    promoting = true;
    promoteOwnLearner(deps.etcd, f, deps.etcd.memberTimeoutMs)
      .then((done) => {
        if (done) log.info({ memberId: f.memberId, leader: f.leaderId }, 'learner promoted to voting member');
        else log.debug('learner not in sync with the leader yet; promotion retried at a later check');
      })
      .catch((err: Error) => log.warn({ err: err.message }, 'learner promotion failed; retried at a later check'))
      .finally(() => {
        promoting = false;
      });
  };

  const roles: RoleLoop = new RoleLoop(
    () =>
      checkOwnMember(member, config.leaderCheckPeriod, (f) => {
        if (mode !== 'elect') return false;
        return shouldStandIn({
          self: config.name,
          leaderId: f.leaderId,
          beats: directory.latest().map((h) => ({ name: h.name, ...(h.memberId ? { memberId: h.memberId } : {}), ...(h.learner ? { learner: true } : {}), ...(h.backsUp === false ? { backsUp: false } : {}), etcdUp: h.etcdUp, ageMs: h.ageMs })),
          ttlMs: config.heartbeatTtl,
          runningMs: performance.now() - startedAt,
          directoryRead: directory.readAt !== undefined,
        });
      }),
    { periodMs: config.leaderCheckPeriod, lostAfter: config.leaderLostAfter, log },
    (elected, previousElected) => {
      const now = effectiveRole(mode, elected);
      const before = effectiveRole(mode, previousElected);
      if (now === before) return;
      deps.metrics.roleChanged(now, before);
      if (now === 'leader') deps.duties.lead();
      else if (before === 'leader') void deps.duties.stepDown();
      if (apiURL !== '') void heartbeat.writeNow().catch(() => {});
    },
    (check) => {
      if (check.facts?.learner) promote(check.facts);
    },
  );

  const forwardTo = (): { url: string; name: string } | undefined => {
    if (effectiveRole(mode, roles.role) === 'leader') return undefined;
    const hb = leaderHeartbeat(directory.latest(), config.heartbeatTtl, roles.current.leaderId, config.name);
    return hb ? { url: hb.apiURL, name: hb.name } : undefined;
  };

  return {
    get role() {
      return effectiveRole(mode, roles.role);
    },
    roles,
    heartbeat,
    directory,
    forwardTo,
    start(url: string) {
      apiURL = url;
      if (mode === 'always') {
        deps.metrics.roleChanged('leader', 'unknown');
        deps.duties.lead();
      }
      // The loop runs in every mode: it reports the member in the heartbeat and promotes a learner,
      // whether or not this sidecar takes snapshots.
      roles.start();
      heartbeat.start();
      directory.start();
    },
    async stop() {
      roles.stop();
      directory.stop();
      await Promise.all([heartbeat.stop(), deps.duties.stepDown()]);
    },
    whyNotLeading() {
      if (mode === 'never') return 'this sidecar does not take snapshots (--snapshot-leader=never) and no backup leader is known';
      const role = effectiveRole(mode, roles.role);
      if (role === 'leader') return 'the snapshotter is starting';
      return `this sidecar is not the backup leader (role ${role}: ${roles.current.reason}) and no backup leader is known from the heartbeats`;
    },
    view() {
      const role = effectiveRole(mode, roles.role);
      const v: LeadershipView = {
        role,
        reason: mode === 'elect' ? roles.current.reason : mode === 'always' ? 'the election is off: --snapshot-leader=always' : `--snapshot-leader=never; election: ${roles.current.reason}`,
        mode,
        roleChanges: roles.changes,
        apiURL,
        heartbeats: directory.latest().map(({ ageMs, ...h }) => ({ ...h, ageSeconds: Math.round(ageMs / 100) / 10, stale: ageMs > config.heartbeatTtl })),
      };
      if (role === 'leader') v.backupLeader = { name: config.name, apiURL, ...(roles.facts ? { memberId: roles.facts.memberId } : {}) };
      else {
        const hb = leaderHeartbeat(directory.latest(), config.heartbeatTtl, roles.current.leaderId, config.name);
        if (hb) v.backupLeader = { name: hb.name, apiURL: hb.apiURL, ...(hb.memberId ? { memberId: hb.memberId } : {}) };
      }
      const err = heartbeat.lastError ?? directory.lastError;
      if (err) v.heartbeatError = err;
      return v;
    },
  };
}
