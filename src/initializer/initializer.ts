// Carries out the decision: gather facts, decide, and for anything irreversible (wiping a data dir,
// removing a member, restoring) gather the facts again right before it and start over when the
// decision changed. The outcome is etcd's config for this member, served by `GET /config`.

import { probeEndpoint } from '../etcd/status.js';
import { advanceClaim } from './claim.js';
import { EtcdConfigWriter } from './config-writer.js';
import { InitializationError, type ActionContext, type InitializerDeps, type InitStatus } from './context.js';
import { decide, waitingReport, type InitFacts, type RecoveryClaim, type Verdict, type WaitingReport } from './decide.js';
import { joiningCluster, type EtcdStart } from './etcd-config.js';
import { gatherFacts, type GatheredFacts } from './facts.js';
import { ClusterGone, MembershipActions } from './membership-actions.js';
import { restoreMember } from './restore-member.js';

export { InitializationError, type InitializerDeps, type InitState, type InitStatus } from './context.js';

export class Initializer {
  private current: InitStatus = { state: 'New', rounds: 0, generation: 0 };
  /** Set by reinitialize(): this member's etcd runs and must be stopped before anything is decided. */
  private ownEtcdRuns = false;
  private running: Promise<InitStatus> | undefined;
  private rendered: string | undefined;
  private started: EtcdStart | undefined;
  private abort = new AbortController();
  private startsWithoutQuorum = false;

  private readonly configWriter: EtcdConfigWriter;
  private readonly membership: MembershipActions;
  private readonly context: ActionContext;

  constructor(private readonly deps: InitializerDeps) {
    this.configWriter = new EtcdConfigWriter(deps);
    this.context = { deps, update: (patch) => this.update(patch), signal: this.abort.signal };
    this.membership = new MembershipActions(this.context);
  }

  status(): InitStatus {
    return { ...this.current, ...(this.ownEtcdRuns ? { stopEtcd: true } : {}) };
  }

  /** etcd's config file, once initialization succeeded. */
  etcdConfig(): string | undefined {
    return this.rendered;
  }

  /** Starts initialization, or joins the one running; a finished one is not repeated. */
  start(): Promise<InitStatus> {
    if (this.current.state === 'Successful') return Promise.resolve(this.status());
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  stop(): void {
    this.abort.abort();
  }

  /**
   * Initializes again while this member's etcd runs: it has had no quorum for long and another
   * member waits for a recovery, which this member's data must take part in. The launcher
   * (`run-etcd`) sees `stopEtcd` and stops etcd; nothing is decided before it has stopped.
   */
  reinitialize(why: string): void {
    // Also from New: a sidecar restarted beside a running etcd has not initialized in this process.
    if ((this.current.state !== 'Successful' && this.current.state !== 'New') || this.running) return;
    this.deps.log.warn({ why }, 'initializing again: the launcher stops etcd first');
    this.ownEtcdRuns = true;
    this.rendered = undefined;
    this.running = this.run().finally(() => {
      this.running = undefined;
    });
  }

  private update(patch: Partial<InitStatus>): void {
    this.current = { ...this.current, ...patch };
  }

  private async run(): Promise<InitStatus> {
    const { log } = this.deps;
    this.rendered = undefined;
    this.startsWithoutQuorum = false;
    this.current = { state: 'Progress', startedAt: new Date().toISOString(), rounds: 0, generation: this.current.generation + 1, progress: 'gathering facts' };
    try {
      if (this.ownEtcdRuns) await this.untilOwnEtcdStopped();
      const start = await this.decideAndAct();
      this.started = start;
      this.rendered = await this.configWriter.configFor(start);
      await this.configWriter.write(this.rendered);
      this.update({ state: 'Successful', finishedAt: new Date().toISOString(), progress: 'done: start etcd with GET /config' });
      log.info({ decision: this.current.decision, state: start.state }, 'initialization succeeded');
    } catch (err) {
      this.update({ state: 'Failed', finishedAt: new Date().toISOString(), error: (err as Error).message });
      log.error({ err: (err as Error).message, decision: this.current.decision }, 'initialization failed');
    } finally {
      // A member that starts its data without a cluster with quorum keeps saying what it holds: its
      // etcd serves nothing until a quorum forms, and the members still deciding must count it
      // (the heartbeat drops the report once its etcd is in a quorum).
      if (!this.startsWithoutQuorum || this.current.state !== 'Successful') await this.announce(undefined);
    }
    return this.status();
  }

  /** Its data dir is read, and its endpoint must not count as a running cluster, only once etcd is gone. */
  private async untilOwnEtcdStopped(): Promise<void> {
    const { etcd, config } = this.deps;
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const self = config.advertiseClientUrls[0] as string;
    this.update({ progress: `waiting for this member's etcd at ${self} to stop (the run-etcd launcher stops it; without one, restart the member)` });
    while ((await probeEndpoint(etcd, self, etcd.memberTimeoutMs)).reachable) {
      if (this.abort.signal.aborted) throw new InitializationError('initialization stopped');
      await sleep(config.initializeRetryPeriod);
    }
    this.ownEtcdRuns = false;
  }

  private async facts(): Promise<GatheredFacts> {
    if (this.abort.signal.aborted) throw new InitializationError('initialization stopped');
    this.update({ rounds: this.current.rounds + 1 });
    const gathered = await gatherFacts(this.deps);
    const started = Date.parse(this.current.startedAt ?? '') || Date.now();
    gathered.facts.graceOver = Date.now() - started >= this.deps.config.heartbeatTtl;
    return gathered;
  }

  /** Loops until a decision other than `wait` is carried out; returns how etcd must start. */
  private async decideAndAct(): Promise<EtcdStart> {
    const { log, config } = this.deps;
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    let lastLogged = '';
    for (;;) {
      const gathered = await this.facts();
      const verdict = decide(gathered.facts);
      this.update({ decision: verdict.decision, reason: verdict.reason });
      if (verdict.reason !== lastLogged) log.info({ decision: verdict.decision, reason: verdict.reason, local: gathered.facts.local.state }, 'initializer decided');
      lastLogged = verdict.reason;
      if (verdict.decision === 'wait') {
        await this.announceWaiting(gathered.facts);
        this.update({ progress: `waiting (round ${this.current.rounds}): ${verdict.reason}` });
        await sleep(config.initializeRetryPeriod);
        continue;
      }
      const start = await this.act(verdict, gathered);
      if (start) return start;
      // The facts changed under an irreversible step: decide again from the top.
    }
  }

  /**
   * A member waiting without a cluster with quorum says in its heartbeat what its data holds: every
   * member then chooses the same copy (or the backups) to recover from.
   */
  private async announceWaiting(facts: InitFacts): Promise<void> {
    await this.announce(facts.cluster?.hasQuorum ? undefined : waitingReport(facts));
  }

  private async announce(report: WaitingReport | undefined): Promise<void> {
    const hb = this.deps.heartbeat;
    if (!hb || JSON.stringify(report) === JSON.stringify(hb.waiting)) return;
    hb.waiting = report;
    await hb.writeNow().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'heartbeat not published'));
  }

  /** Gathers the facts again right before an irreversible step: undefined when the decision changed. */
  private async confirm(verdict: Verdict, step: string): Promise<GatheredFacts | undefined> {
    this.update({ progress: `re-checking the facts before: ${step}` });
    const again = await this.facts();
    const now = decide(again.facts);
    if (now.decision === verdict.decision && now.removeMemberId === verdict.removeMemberId && now.recovery?.source === verdict.recovery?.source && now.recovery?.epoch === verdict.recovery?.epoch)
      return again;
    this.deps.log.warn({ was: verdict.decision, now: now.decision, reason: now.reason }, `the facts changed before ${step}; deciding again`);
    return undefined;
  }

  private async act(verdict: Verdict, gathered: GatheredFacts): Promise<EtcdStart | undefined> {
    const { config } = this.deps;
    const { facts } = gathered;
    switch (verdict.decision) {
      case 'use-existing':
        this.startsWithoutQuorum = !facts.cluster?.hasQuorum;
        if (this.startsWithoutQuorum) await this.announceWaiting(facts);
        return { state: 'existing', initialCluster: config.initialCluster };
      case 'bootstrap':
        return { state: 'new', initialCluster: config.initialCluster };
      case 'join-existing': {
        const cluster = facts.cluster;
        if (!cluster) return undefined;
        return { state: 'existing', initialCluster: joiningCluster(cluster.members, facts.self, config.initialCluster) };
      }
      case 'join-as-learner':
      case 'replace': {
        const confirmed = await this.confirm(verdict, verdict.decision === 'replace' ? `removing member ${verdict.removeMemberId}` : 'adding this member as a learner');
        if (!confirmed) return undefined;
        try {
          if (verdict.removeMemberId) await this.membership.removeMember(verdict.removeMemberId, confirmed);
          await this.membership.wipe();
          return await this.membership.addAsLearner();
        } catch (err) {
          if (!(err instanceof ClusterGone)) throw err;
          // Wiped or not, the data dir is what the next decision reads: it never assumes a wipe.
          this.deps.log.warn({ err: err.message }, 'the cluster went away during a membership change; deciding again');
          return undefined;
        }
      }
      case 'restore': {
        const source = verdict.recovery?.source ?? 'backups';
        const confirmed = await this.confirm(verdict, source === 'backups' ? 'restoring from the backups' : 'recovering the cluster from its own data');
        if (!confirmed) return undefined;
        if (!verdict.recovery) return restoreMember(this.context, confirmed.facts, undefined);
        const claimed = await this.claim(verdict.recovery, confirmed.facts);
        if (claimed === undefined) return undefined;
        const start = await restoreMember(this.context, confirmed.facts, verdict.recovery);
        await this.settleClaim(verdict.recovery, claimed);
        return start;
      }
      case 'wait':
        return undefined;
    }
  }

  /**
   * Takes the recovery epoch in the store (or keeps it, resuming): the version of the claim, or
   * undefined when another member claimed first or the store failed, and the facts must be read again.
   */
  private async claim(recovery: NonNullable<Verdict['recovery']>, facts: InitFacts): Promise<string | undefined> {
    const { store, log, config } = this.deps;
    const current = facts.recovery;
    const mine: RecoveryClaim = { epoch: recovery.epoch, holder: config.name, source: recovery.source, state: 'claimed' };
    if (current?.version !== undefined && JSON.stringify(current.claim) === JSON.stringify(mine)) return current.version;
    this.update({ progress: `claiming recovery epoch ${recovery.epoch} in the store` });
    try {
      const version = await advanceClaim(store, mine, current?.version);
      if (version === undefined) log.warn({ epoch: recovery.epoch }, 'another member changed the recovery claim first; deciding again');
      else log.info({ epoch: recovery.epoch, source: recovery.source }, 'recovery epoch claimed');
      return version;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'the recovery claim could not be written; deciding again');
      return undefined;
    }
  }

  /** Marks the epoch done; a failure only means others see the claim a little longer. */
  private async settleClaim(recovery: NonNullable<Verdict['recovery']>, version: string): Promise<void> {
    const done: RecoveryClaim = { epoch: recovery.epoch, holder: this.deps.config.name, source: recovery.source, state: 'done' };
    await advanceClaim(this.deps.store, done, version).then(
      (v) => (v === undefined ? this.deps.log.warn({ epoch: recovery.epoch }, 'the recovery claim changed while this member recovered') : undefined),
      (err: Error) => this.deps.log.warn({ err: err.message }, 'the recovery claim could not be marked done'),
    );
  }
}
