import type { EtcdClient, EtcdMember } from '../etcd/client.js';
import { confirmQuorum, readMemberStatus } from '../etcd/member-status.js';
import { promoteLearner } from '../etcd/membership.js';
import { retryWithBackoff, settleWithin, withDeadline } from '../resilience.js';
import type { Logger } from '../logger.js';
import { INITIAL_ROLE, nextRole, type CheckResult, type Role, type RoleState } from './role.js';

/** What the last check learnt of the own member (for heartbeats and /status). */
export interface MemberFacts {
  memberId: string;
  clusterId: string;
  leaderId: string;
  learner: boolean;
  revision: number;
  raftIndex: number;
  raftTerm: number;
  at: Date;
}

/** One check: the role verdict and, when the member answered its status, what it said. */
export interface Check {
  result: CheckResult;
  facts?: MemberFacts;
}

/** The own member's status, within the deadline whatever the member does. */
export async function readMemberFacts(member: EtcdMember, deadlineMs: number): Promise<MemberFacts> {
  const s = await readMemberStatus(member, deadlineMs);
  return { memberId: s.memberId, clusterId: s.clusterId, leaderId: s.leaderId, learner: s.isLearner, revision: s.revision, raftIndex: s.raftIndex, raftTerm: s.raftTerm, at: new Date() };
}

/** A key nobody writes; reading it costs etcd a ReadIndex round, nothing more. */
const QUORUM_PROBE_KEY = '/etcd-backup-sidecar/quorum-probe';

/**
 * Asks the own member whether it leads, within `deadlineMs` in all. Leading is only confirmed by a
 * linearizable read answered by this member: etcd 3.4 serves it after a ReadIndex round with a
 * quorum, so a leader cut off from the others (frozen peers, partition; pre-vote is off and
 * CheckQuorum needs an election timeout) cannot confirm while it still reports itself leader.
 */
export async function checkOwnMember(member: EtcdMember, deadlineMs: number, standIn: (facts: MemberFacts) => boolean = () => false): Promise<Check> {
  const deadline = Date.now() + deadlineMs;
  let facts: MemberFacts;
  try {
    facts = await readMemberFacts(member, deadlineMs);
  } catch (err) {
    return { result: { kind: 'unconfirmed', reason: `own member did not answer its status: ${(err as Error).message}` } };
  }
  if (facts.leaderId === '0') return { result: { kind: 'unconfirmed', reason: 'own member knows no raft leader (election running or no quorum)' }, facts };
  const standing = facts.leaderId !== facts.memberId && !facts.learner && standIn(facts);
  if (facts.leaderId !== facts.memberId && !standing) return { result: { kind: 'follower', memberId: facts.memberId, leaderId: facts.leaderId }, facts };
  try {
    await confirmQuorum(member, QUORUM_PROBE_KEY, Math.max(1, deadline - Date.now()));
  } catch (err) {
    const claim = standing ? `stands in for the silent sidecar of leader ${facts.leaderId}` : 'reports itself leader';
    return { result: { kind: 'unconfirmed', reason: `own member ${claim} but a linearizable read failed (no quorum?): ${(err as Error).message}` }, facts };
  }
  return { result: standing ? { kind: 'leader', memberId: facts.memberId, standInFor: facts.leaderId } : { kind: 'leader', memberId: facts.memberId }, facts };
}

export interface RoleLoopOptions {
  periodMs: number;
  lostAfter: number;
  log: Logger;
}

/**
 * The role loop: one bounded check per period, ticks never overlap, and nothing else is awaited
 * in a tick (starting and stopping the snapshotters, heartbeats and promotions run beside it), so
 * its rhythm holds whatever the store or other members do (seed 001).
 */
export class RoleLoop {
  private state: RoleState = INITIAL_ROLE;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private lastFacts: MemberFacts | undefined;
  private reached = false;
  changes = 0;
  checks = 0;

  constructor(
    private readonly check: () => Promise<Check>,
    private readonly opts: RoleLoopOptions,
    /** Called (synchronously, from the tick) when the role changes; must not block. */
    private readonly onChange: (role: Role, previous: Role, state: RoleState) => void,
    /** Called after every check; must not block. */
    private readonly onCheck: (check: Check) => void = () => {},
  ) {}

  get role(): Role {
    return this.state.role;
  }

  get current(): RoleState {
    return this.state;
  }

  /** What the own member said at the last check that reached it. */
  get facts(): MemberFacts | undefined {
    return this.lastFacts;
  }

  /** Whether the last completed check reached the own member. */
  get etcdUp(): boolean {
    return this.reached;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    let check: Check;
    try {
      check = await this.check();
    } catch (err) {
      check = { result: { kind: 'unconfirmed', reason: (err as Error).message } };
    }
    if (this.stopped) return;
    this.checks++;
    if (check.facts) this.lastFacts = check.facts;
    this.reached = check.facts !== undefined;
    this.apply(check);
    // The next check starts one period after this one started, or at once when it took longer.
    this.timer = setTimeout(() => void this.tick(), Math.max(0, this.opts.periodMs - (Date.now() - started)));
  }

  private apply(check: Check): void {
    const previous = this.state;
    this.state = nextRole(previous, check.result, this.opts.lostAfter);
    try {
      this.onCheck(check);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'role loop: check observer failed');
    }
    if (this.state.role === previous.role) return;
    this.changes++;
    this.opts.log.info({ role: this.state.role, previous: previous.role, reason: this.state.reason }, 'backup role changed');
    try {
      this.onChange(this.state.role, previous.role, this.state);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'role loop: role change handler failed');
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

const STOP_WAIT_MS = 30_000;
/** A duty that fails to start (etcd not answering yet) is retried within these pauses while the role lasts. */
const START_RETRY_MIN_MS = 1_000;
const START_RETRY_MAX_MS = 30_000;

/** Something the backup leader runs: started when leading, stopped at once when not. */
export interface Duty {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a fresh duty (a new Snapshotter: it resumes from the store's chain) each time the role
 * becomes leader, and stops it as soon as the role is lost. Never awaited by the role loop; a start
 * waits for the previous stop, so two snapshotters of this sidecar never run together. A start that
 * fails (etcd not answering yet) is retried with backoff while the role lasts.
 */
export class DutyRunner<D extends Duty> {
  private active: D | undefined;
  private generation = 0;
  private settled: Promise<void> = Promise.resolve();
  private retries: AbortController | undefined;

  constructor(
    private readonly make: () => D,
    private readonly log: Logger,
    /** Called when a start attempt fails (to show the reason). */
    private readonly failed: (duty: D, err: Error) => void = () => {},
  ) {}

  get current(): D | undefined {
    return this.active;
  }

  lead(): void {
    const gen = ++this.generation;
    this.retries?.abort();
    const retries = new AbortController();
    this.retries = retries;
    this.settled = this.settled.then(() => this.start(gen, retries.signal));
  }

  private async start(gen: number, signal: AbortSignal): Promise<void> {
    const current = (): boolean => gen === this.generation;
    await retryWithBackoff(
      async () => {
        if (!current()) return;
        const duty = this.active ?? this.make();
        this.active = duty;
        try {
          await duty.start();
        } catch (err) {
          if (current()) this.failed(duty, err as Error);
          throw err;
        }
      },
      {
        initialDelayMs: START_RETRY_MIN_MS,
        maxDelayMs: START_RETRY_MAX_MS,
        signal,
        retryWhile: current,
        onFailure: (err) => {
          if (current()) this.log.error({ err: err.message }, 'snapshotter could not start; retrying');
        },
      },
    ).catch(() => {});
  }

  /** Stops the running duty; resolves when it has stopped. */
  stepDown(): Promise<void> {
    this.generation++;
    this.retries?.abort();
    const duty = this.active;
    this.active = undefined;
    if (!duty) return this.settled;
    // Not chained behind a start that hangs on a frozen member: stopping must begin at once.
    const stopping = duty.stop().catch((err: Error) => this.log.error({ err: err.message }, 'snapshotter did not stop cleanly'));
    // A start or stop stuck on a frozen member (a full snapshot stream has no deadline) must not keep this
    // sidecar from leading again forever; the chain tolerates the overlap, never a gap.
    this.settled = settleWithin(Promise.all([this.settled, stopping]), STOP_WAIT_MS).then(() => {});
    return stopping;
  }
}

/**
 * Promotes the own learner member through the raft leader's own endpoint: a follower forwarding
 * the promote drops the auth token (seed 002). Resolves true when promoted, false when etcd says
 * the learner is not in sync yet (the role loop retries at a later check); throws otherwise.
 */
export async function promoteOwnLearner(client: Pick<EtcdClient, 'listMembers' | 'member'>, self: MemberFacts, timeoutMs: number): Promise<boolean> {
  const members = await withDeadline('member list', timeoutMs, () => client.listMembers());
  const url = members.find((m) => m.id === self.leaderId)?.clientURLs[0];
  if (!url) throw new Error(`the raft leader ${self.leaderId} has no client URL in the member list`);
  return promoteLearner(client.member(url), self.memberId, timeoutMs);
}
