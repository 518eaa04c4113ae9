/**
 * A defragmentation round, run by the backup leader's sidecar: plan (plan.ts) from a fresh health
 * round, then one member at a time, each with its own deadline, waiting for it to be healthy again
 * before the next, and planning again before each (a member that went down meanwhile stops the
 * round). A round never overlaps another.
 */
import type { ClusterStatus, EndpointStatus } from '../etcd/status.js';
import type { Logger } from '../logger.js';
import { retryWithBackoff, withDeadline } from '../resilience.js';
import { alarmType } from '../etcd/alarms.js';
import { nextTarget, planDefrag, type DefragTarget } from './plan.js';

export interface MemberDefrag {
  id: string;
  name: string;
  outcome: 'defragmented' | 'skipped' | 'failed';
  /** It was the raft leader when its turn came (the leader goes last). */
  raftLeader?: boolean;
  reason?: string;
  dbSizeBefore?: number;
  dbSizeAfter?: number;
  startedAt?: string;
  durationMs?: number;
}

export interface DefragReport {
  reason: string;
  startedAt: string;
  finishedAt: string;
  members: MemberDefrag[];
  /** Why the round stopped before its plan was done, or did not start. */
  stopped?: string;
}

/** Told of each member's outcome (metrics). */
export interface DefragObserver {
  memberDefragmented(m: MemberDefrag): void;
}

export interface DefragDeps {
  /** A fresh health round of every member. */
  clusterStatus(): Promise<ClusterStatus>;
  /** One member's status, to see it healthy again and read its new db size. */
  probe(clientURL: string): Promise<EndpointStatus>;
  defragment(clientURL: string, timeoutMs: number): Promise<void>;
  log: Logger;
  observer?: DefragObserver;
}

export interface DefragSettings {
  thresholdPercent: number;
  /** Deadline of one member's defragmentation. */
  timeoutMs: number;
  /** How long a defragmented member may take to answer healthy again before the round stops. */
  recoverTimeoutMs: number;
  pollMs?: number;
}

/** A round is already running; a second would make two members busy at once. */
export class DefragBusyError extends Error {
  override name = 'DefragBusyError';
  constructor() {
    super('a defragmentation round is already running');
  }
}

/** The cluster is not in a state where a member may be busy (no quorum to spare, a member down). */
export class DefragRefusedError extends Error {
  override name = 'DefragRefusedError';
}

export class Defragmenter {
  private running: Promise<DefragReport> | undefined;
  /** The last outcome per member, across rounds (for /status). */
  readonly lastByMember = new Map<string, MemberDefrag>();
  lastReport: DefragReport | undefined;

  constructor(
    private readonly deps: DefragDeps,
    private readonly settings: DefragSettings,
  ) {}

  get isRunning(): boolean {
    return this.running !== undefined;
  }

  /**
   * One round; rejects with DefragBusyError while one runs, DefragRefusedError when the cluster
   * cannot spare a member. `cure` runs it despite one alarm on every member it names (NOSPACE), each
   * member whatever its free space.
   */
  run(reason: string, only?: string, cure?: { alarm: string }): Promise<DefragReport> {
    if (this.running) return Promise.reject(new DefragBusyError());
    this.running = this.round(reason, only, cure).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(reason: string, only: string | undefined, cure: { alarm: string } | undefined): Promise<DefragReport> {
    const startedAt = new Date().toISOString();
    const planOptions = { thresholdPercent: cure ? 0 : this.settings.thresholdPercent, ...(only !== undefined ? { only } : {}), ...(cure ? { tolerateAlarm: cure.alarm } : {}) };
    const first = planDefrag(await this.deps.clusterStatus(), planOptions);
    if (!first.go) throw new DefragRefusedError(`defragmentation refused: ${first.reason}`);
    const members: MemberDefrag[] = first.skipped.map((s) => ({ id: s.id, name: s.name, outcome: 'skipped', reason: s.reason }));
    const report: DefragReport = { reason, startedAt, finishedAt: startedAt, members };
    this.deps.log.info({ reason, order: first.order.map((t) => t.name), skipped: first.skipped }, 'defragmentation round starting');
    const remaining = new Set(first.order.map((t) => t.name));
    while (remaining.size > 0) {
      // The cluster may have changed while the previous member was busy (its health, its leader): plan again.
      const now = planDefrag(await this.deps.clusterStatus(), planOptions);
      if (!now.go) {
        report.stopped = `before ${[...remaining].join(', ')}: ${now.reason}`;
        break;
      }
      const current = nextTarget(now, remaining);
      if (!current) break;
      remaining.delete(current.name);
      const outcome = await this.defragmentOne(current, cure);
      members.push(outcome);
      this.lastByMember.set(outcome.name, outcome);
      this.deps.observer?.memberDefragmented(outcome);
      if (outcome.outcome === 'failed') {
        report.stopped = `${outcome.name}: ${outcome.reason ?? 'failed'}`;
        break;
      }
    }
    report.finishedAt = new Date().toISOString();
    this.lastReport = report;
    this.deps.log.info({ members: members.map((m) => ({ name: m.name, outcome: m.outcome, before: m.dbSizeBefore, after: m.dbSizeAfter })), stopped: report.stopped }, 'defragmentation round done');
    return report;
  }

  private async defragmentOne(t: DefragTarget, cure: { alarm: string } | undefined): Promise<MemberDefrag> {
    const started = performance.now();
    const base: MemberDefrag = { id: t.id, name: t.name, outcome: 'defragmented', ...(t.isLeader ? { raftLeader: true } : {}), dbSizeBefore: t.dbSize, startedAt: new Date().toISOString() };
    this.deps.log.info({ member: t.name, leader: t.isLeader, dbSize: t.dbSize, dbSizeInUse: t.dbSizeInUse }, 'defragmenting member');
    try {
      await this.deps.defragment(t.clientURL, this.settings.timeoutMs);
      const after = await this.untilHealthy(t, cure);
      return { ...base, ...(after.dbSize !== undefined ? { dbSizeAfter: after.dbSize } : {}), durationMs: Math.round(performance.now() - started) };
    } catch (err) {
      this.deps.log.error({ member: t.name, err: (err as Error).message }, 'defragmentation of a member failed; the round stops');
      return { ...base, outcome: 'failed', reason: (err as Error).message, durationMs: Math.round(performance.now() - started) };
    }
  }

  /** The member answering with a leader and no alarm, within recoverTimeoutMs. */
  private async untilHealthy(t: DefragTarget, cure: { alarm: string } | undefined): Promise<EndpointStatus> {
    const poll = this.settings.pollMs ?? 200;
    return withDeadline(`${t.name} healthy again after defragmentation`, this.settings.recoverTimeoutMs, (signal) =>
      retryWithBackoff(
        async () => {
          const s = await this.deps.probe(t.clientURL);
          // The alarm a cure runs despite stays raised until the round disarms it.
          const alarms = s.alarms.filter((a) => alarmType(a) !== cure?.alarm);
          if (!s.reachable || s.leaderId === undefined || s.leaderId === '0' || alarms.length > 0) throw new Error(s.error ?? (alarms.length > 0 ? `alarms: ${alarms.join(', ')}` : 'no leader'));
          return s;
        },
        { initialDelayMs: poll, maxDelayMs: 5 * poll, signal },
      ),
    );
  }
}
