// Carries out the decision: gather facts, decide, and for anything irreversible (wiping a data dir,
// removing a member, restoring) gather the facts again right before it and start over when the
// decision changed. The outcome is etcd's config for this member, served by `GET /config`.

import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { Config } from '../config/index.js';
import { writeFileDurably } from '../durable-file.js';
import type { EtcdClient } from '../etcd/client.js';
import { inspectDataDir } from '../etcd/datadir.js';
import { addLearner, removeMember } from '../etcd/membership.js';
import { probeEndpoint, type ClusterStatus } from '../etcd/status.js';
import type { HeartbeatWriter } from '../cluster/heartbeat.js';
import type { HeartbeatAges } from '../cluster/heartbeat-ages.js';
import type { Logger } from '../logger.js';
import { restore, restoreFromDataDir, restoreOptionsFromConfig } from '../restore/index.js';
import type { SnapStore } from '../snapstore/index.js';
import { advanceClaim } from './claim.js';
import { decide, findSelf, waitingReport, type Decision, type InitFacts, type RecoveryClaim, type Verdict, type WaitingReport } from './decide.js';
import { etcdTools, etcdVersion, releaseBinDir } from '../etcd/tools.js';
import { joiningCluster, renderEtcdConfig, type EtcdStart, type EtcdTarget, type MemberIdentity } from './etcd-config.js';
import { noteText } from './etcd-config-version.js';
import { clusterMember, clusterNow, gatherFacts, type GatheredFacts } from './facts.js';

export type InitState = 'New' | 'Progress' | 'Successful' | 'Failed';

export interface InitStatus {
  state: InitState;
  decision?: Decision;
  reason?: string;
  progress?: string;
  error?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Rounds of fact gathering so far (a waiting member counts up). */
  rounds: number;
  /**
   * Counts initializations: a launcher running etcd (`run-etcd`) stops it and starts it again with
   * the new config when this changes (the sidecar began initializing again).
   */
  generation: number;
  /** Set while this member's etcd must stop before initialization goes on: the launcher (run-etcd) stops it. */
  stopEtcd?: boolean;
}

export interface InitializerDeps {
  config: Config;
  etcd: EtcdClient;
  store: SnapStore;
  log: Logger;
  /** This member's heartbeat: the others read its waiting report from it, and a restore resets what it carries. */
  heartbeat?: Pick<HeartbeatWriter, 'waiting' | 'writeNow' | 'remember'>;
  /** Judges heartbeat freshness by this process's clock (shared with the election). */
  ages: HeartbeatAges;
  sleep?: (ms: number) => Promise<void>;
}

/** etcd answers these while a learner is catching up or the cluster is electing: retry, don't fail. */
const RETRYABLE_MEMBERSHIP = /too many learner members|unhealthy cluster|no leader|leader changed|timed out|deadline exceeded|unavailable/i;
const MEMBERSHIP_ATTEMPTS = 30;

export class InitializationError extends Error {}

/** The cluster a membership change needs is gone (no quorum, no leader): decide again, do not retry. */
class ClusterGone extends Error {}

export class Initializer {
  private current: InitStatus = { state: 'New', rounds: 0, generation: 0 };
  /** Set by reinitialize(): this member's etcd runs and must be stopped before anything is decided. */
  private ownEtcdRuns = false;
  private running: Promise<InitStatus> | undefined;
  private rendered: string | undefined;
  private started: EtcdStart | undefined;
  private abort = new AbortController();
  private startsWithoutQuorum = false;

  constructor(private readonly deps: InitializerDeps) {}

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

  /** --etcd-config-file: the config where etcd reads it, replaced whole, so etcd never reads half a file. */
  private async writeConfigFile(): Promise<void> {
    const file = this.deps.config.etcdConfigFile;
    if (!file || this.rendered === undefined) return;
    await writeFileDurably(file, this.rendered);
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
      this.rendered = this.render(start, await this.target());
      await this.writeConfigFile();
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
    if (now.decision === verdict.decision && now.removeMemberId === verdict.removeMemberId && now.recovery?.source === verdict.recovery?.source && now.recovery?.epoch === verdict.recovery?.epoch) return again;
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
          if (verdict.removeMemberId) await this.removeMember(verdict.removeMemberId, confirmed);
          await this.wipe();
          return await this.addAsLearner();
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
        if (!verdict.recovery) return this.restore(confirmed.facts, undefined);
        const claimed = await this.claim(verdict.recovery, confirmed.facts);
        if (claimed === undefined) return undefined;
        const start = await this.restore(confirmed.facts, verdict.recovery);
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

  private async wipe(): Promise<void> {
    this.update({ progress: `wiping the data dir ${this.deps.config.dataDir}` });
    await rm(this.deps.config.dataDir, { recursive: true, force: true });
  }

  /** The client URL of the raft leader: membership changes go there (seed 002: a follower forwarding a promote loses the token). */
  private leaderURL(status: ClusterStatus): string | undefined {
    return status.members.find((m) => m.isLeader)?.clientURLs[0];
  }

  private async withMembershipRetries<T>(what: string, op: () => Promise<T>): Promise<T> {
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    let delay = 500;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (err instanceof ClusterGone) throw err;
        const msg = (err as Error).message;
        if (attempt >= MEMBERSHIP_ATTEMPTS || !RETRYABLE_MEMBERSHIP.test(msg)) throw new InitializationError(`${what}: ${msg}`);
        this.update({ progress: `${what}: ${msg}; retrying (attempt ${attempt})` });
        await sleep(delay);
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  private async removeMember(id: string, confirmed: GatheredFacts): Promise<void> {
    let status: ClusterStatus | undefined = confirmed.status;
    await this.withMembershipRetries(`member remove ${id}`, async () => {
      // The leader of the first attempt may be the member that just went down (its peers have not
      // elected another yet): every retry asks again.
      if (!status) {
        const now = await clusterNow(this.deps);
        if (!now.cluster?.hasQuorum) throw new ClusterGone(`no cluster with quorum answers any more (member remove ${id})`);
        status = now.status;
      }
      const url = this.leaderURL(status);
      status = undefined;
      if (!url) throw new Error('no leader known');
      this.update({ progress: `removing member ${id} through the leader at ${url}` });
      try {
        await removeMember(this.deps.etcd.member(url), id, this.deps.etcd.memberTimeoutMs);
      } catch (err) {
        // Removed by an earlier attempt whose answer was lost: the goal is reached.
        if (/member not found/i.test((err as Error).message)) return;
        throw err;
      }
    });
    this.deps.log.info({ memberId: id }, 'member removed');
  }

  /** `member add --learner`, serialized by etcd itself (one learner at a time): retried while another catches up. */
  private async addAsLearner(): Promise<EtcdStart> {
    const { config, log } = this.deps;
    const self = { name: config.name, peerURLs: config.initialAdvertisePeerUrls };
    const members = await this.withMembershipRetries('member add --learner', async () => {
      // Asked afresh each attempt: the leader may have changed, or an earlier attempt may have added us.
      const { status, cluster } = await clusterNow(this.deps);
      if (!cluster?.hasQuorum) throw new ClusterGone('no cluster with quorum answers any more (member add --learner)');
      if (findSelf(cluster, self)) return cluster.members;
      const url = this.leaderURL(status);
      if (!url) throw new Error('no leader known');
      this.update({ progress: `adding this member as a learner through the leader at ${url}` });
      const res = await addLearner(this.deps.etcd.member(url), self.peerURLs, this.deps.etcd.memberTimeoutMs);
      log.info({ memberId: res.added.id, leader: url }, 'member added as a learner');
      return res.members.map(clusterMember);
    });
    return { state: 'existing', initialCluster: joiningCluster(members, self, config.initialCluster) };
  }

  /**
   * A restore of this member's data dir, from the backups or (a recovery from the newest surviving
   * copy) from its own data. A multi-member cluster is recovered as a one-member cluster the others
   * join as learners, so no member ever starts from a copy the others do not share; its token names
   * the recovery epoch, so each recovery makes a cluster ID no earlier one had.
   */
  private async restore(facts: InitFacts, recovery: Verdict['recovery']): Promise<EtcdStart> {
    const { config, store, log } = this.deps;
    const initialCluster = config.initialCluster.length > 1 ? config.initialCluster.filter((m) => m.name === config.name) : config.initialCluster;
    // With a folder per minor (the image), the release the cluster runs (--etcd-version) restores:
    // a data dir written by a newer release than the cluster's etcd could not be opened by it.
    const binDir = releaseBinDir(config.etcdBinDir || undefined, config.etcdVersion || undefined);
    const identity = {
      ...restoreOptionsFromConfig(config, initialCluster),
      ...(binDir ? { etcdBinDir: binDir } : {}),
      ...(recovery ? { initialClusterToken: `${config.initialClusterToken}-recovery-${recovery.epoch}` } : {}),
    };
    const restoreLog = log.child({ part: 'restore' });
    if (recovery?.source === 'local-copy') {
      this.update({ progress: 'recovering the cluster from the data dir: replaying its WAL in a temporary etcd' });
      const result = await restoreFromDataDir({ dataDir: config.dataDir, ...identity, log: restoreLog });
      log.info({ revision: result.revision, epoch: recovery.epoch }, 'recovered the cluster from the newest surviving copy, this data dir');
    } else {
      // Up to the end of the contiguous chain: a gap after it must not turn into a restore that
      // fails and is retried forever (decide() compared the local data with that end too).
      const chain = facts.backups.chain;
      if (chain?.gaps) log.warn({ lastRevision: chain.lastRevision, gaps: chain.gaps }, 'the backups have a gap: restoring up to the end of their contiguous part');
      this.update({ progress: 'restoring from the backups' });
      const result = await restore({
        store,
        dataDir: config.dataDir,
        replaceExisting: true,
        ...identity,
        ...(chain?.gaps ? { toRevision: chain.lastRevision } : {}),
        log: restoreLog,
        signal: this.abort.signal,
        onProgress: (p) => this.update({ progress: `restoring: ${p.phase}, revision ${p.revision} of ${p.targetRevision} (${p.deltasApplied}/${p.deltasTotal} deltas)` }),
      });
      log.info({ revision: result.revision, full: result.fullSnapshot, deltas: result.deltasApplied, local: facts.local.state, ...(recovery ? { epoch: recovery.epoch } : {}) }, 'restored from the backups');
    }
    // The restored data dir starts a new raft log: the raft index the heartbeat carried from the old
    // one would make it look as if it went back in time at the next start.
    const restored = await inspectDataDir(config.dataDir);
    this.deps.heartbeat?.remember({
      ...(restored.memberId ? { memberId: restored.memberId } : {}),
      ...(restored.clusterId ? { clusterId: restored.clusterId } : {}),
      ...(restored.raftIndex !== undefined ? { raftIndex: restored.raftIndex } : {}),
      ...(restored.revision !== undefined ? { revision: restored.revision } : {}),
    });
    await this.deps.heartbeat?.writeNow().catch((err: Error) => log.warn({ err: err.message }, 'heartbeat not published'));
    return { state: 'new', initialCluster };
  }

  /**
   * The etcd that reads GET /config: --etcd-version, or the version of the etcd beside this sidecar
   * (--etcd-bin-dir or PATH). Unknown (no etcd here, and no --etcd-version): the template is passed
   * on unchecked, as before versions mattered.
   */
  private async target(): Promise<EtcdTarget | undefined> {
    const c = this.deps.config;
    if (c.etcdVersion) return { minor: c.etcdVersion, maxLearners: c.maxLearners };
    try {
      const { minor } = await etcdVersion(etcdTools(c.etcdBinDir || undefined));
      return { minor, maxLearners: c.maxLearners };
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, "etcd's version is unknown (set --etcd-version): GET /config passes the template on unchecked");
      return undefined;
    }
  }

  private render(start: EtcdStart, target: EtcdTarget | undefined): string {
    const c = this.deps.config;
    const identity: MemberIdentity = {
      name: c.name,
      dataDir: c.dataDir,
      initialClusterToken: c.initialClusterToken,
      initialAdvertisePeerUrls: c.initialAdvertisePeerUrls,
      advertiseClientUrls: c.advertiseClientUrls,
      listenPeerUrls: c.listenPeerUrls,
      listenClientUrls: c.listenClientUrls,
    };
    const { yaml, notes } = renderEtcdConfig(identity, start, c.etcdConfigTemplate ? readTemplate(c.etcdConfigTemplate) : {}, target);
    for (const n of notes) this.deps.log.warn({ key: n.key, etcd: target?.minor }, `etcd config template: ${noteText(n)}`);
    return yaml;
  }
}

function readTemplate(path: string): Record<string, unknown> {
  const doc: unknown = parseYaml(readFileSync(path, 'utf8'));
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new InitializationError(`--etcd-config-template ${path}: expected a mapping of etcd settings`);
  return doc as Record<string, unknown>;
}
