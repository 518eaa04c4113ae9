/**
 * The initializer's membership changes: remove a member that lost its data, wipe this member's
 * data dir, add it back as a learner. Each goes through the raft leader's own endpoint and is retried
 * while etcd says "not now" (a learner catching up, an election); a cluster that lost its quorum
 * meanwhile ends the action (ClusterGone) and the initializer decides again.
 */
import { rm } from 'node:fs/promises';
import { addLearner, removeMember as removeMemberVia } from '../etcd/membership.js';
import type { ClusterStatus } from '../etcd/status.js';
import { DeadlineError, retryWithBackoff } from '../resilience.js';
import { InitializationError, type ActionContext } from './context.js';
import { findSelf } from './decide.js';
import { joiningCluster, type EtcdStart } from './etcd-config.js';
import { clusterMember, clusterNow, type GatheredFacts } from './facts.js';

/**
 * etcd answers these while a learner is catching up or the cluster is electing, and the client
 * these when the member asked went down mid-call (CANCELLED, a reset or refused connection): retry,
 * don't fail. Every attempt asks the cluster afresh, so one that applied unanswered is not redone.
 */
const RETRYABLE_MEMBERSHIP = /too many learner members|unhealthy cluster|no leader|leader changed|timed out|deadline exceeded|unavailable|cancelled|ECONNRESET|ECONNREFUSED/i;
const MEMBERSHIP_ATTEMPTS = 30;

/** The cluster a membership change needs is gone (no quorum, no leader): decide again, do not retry. */
export class ClusterGone extends Error {}

export class MembershipActions {
  constructor(private readonly ctx: ActionContext) {}

  async wipe(): Promise<void> {
    this.ctx.update({ progress: `wiping the data dir ${this.ctx.deps.config.dataDir}` });
    await rm(this.ctx.deps.config.dataDir, { recursive: true, force: true });
  }

  /** The client URL of the raft leader: membership changes go there (seed 002: a follower forwarding a promote loses the token). */
  private leaderURL(status: ClusterStatus): string | undefined {
    return status.members.find((m) => m.isLeader)?.clientURLs[0];
  }

  private async withMembershipRetries<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await retryWithBackoff(op, {
        initialDelayMs: 500,
        maxDelayMs: 5_000,
        maxAttempts: MEMBERSHIP_ATTEMPTS,
        signal: this.ctx.signal,
        // A member that did not answer in time (an election, a frozen leader) is asked again like one that said "not now".
        retryWhile: (err) => !(err instanceof ClusterGone) && (err instanceof DeadlineError || RETRYABLE_MEMBERSHIP.test(err.message)),
        onFailure: (err, attempt) => this.ctx.update({ progress: `${what}: ${err.message}; retrying (attempt ${attempt})` }),
      });
    } catch (err) {
      if (err instanceof ClusterGone) throw err;
      throw new InitializationError(`${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  async removeMember(id: string, confirmed: GatheredFacts): Promise<void> {
    let status: ClusterStatus | undefined = confirmed.status;
    await this.withMembershipRetries(`member remove ${id}`, async () => {
      // The leader of the first attempt may be the member that just went down (its peers have not
      // elected another yet): every retry asks again.
      if (!status) {
        const now = await clusterNow(this.ctx.deps);
        if (!now.cluster?.hasQuorum) throw new ClusterGone(`no cluster with quorum answers any more (member remove ${id})`);
        status = now.status;
      }
      const url = this.leaderURL(status);
      status = undefined;
      if (!url) throw new Error('no leader known');
      this.ctx.update({ progress: `removing member ${id} through the leader at ${url}` });
      try {
        await removeMemberVia(this.ctx.deps.etcd.member(url), id, this.ctx.deps.etcd.memberTimeoutMs);
      } catch (err) {
        // Removed by an earlier attempt whose answer was lost: the goal is reached.
        if (/member not found/i.test((err as Error).message)) return;
        throw err;
      }
    });
    this.ctx.deps.log.info({ memberId: id }, 'member removed');
  }

  /** `member add --learner`, serialized by etcd itself (one learner at a time): retried while another catches up. */
  async addAsLearner(): Promise<EtcdStart> {
    const { config, log } = this.ctx.deps;
    const self = { name: config.name, peerURLs: config.initialAdvertisePeerUrls };
    const members = await this.withMembershipRetries('member add --learner', async () => {
      // Asked afresh each attempt: the leader may have changed, or an earlier attempt may have added us.
      const { status, cluster } = await clusterNow(this.ctx.deps);
      if (!cluster?.hasQuorum) throw new ClusterGone('no cluster with quorum answers any more (member add --learner)');
      if (findSelf(cluster, self)) return cluster.members;
      const url = this.leaderURL(status);
      if (!url) throw new Error('no leader known');
      this.ctx.update({ progress: `adding this member as a learner through the leader at ${url}` });
      const res = await addLearner(this.ctx.deps.etcd.member(url), self.peerURLs, this.ctx.deps.etcd.memberTimeoutMs);
      log.info({ memberId: res.added.id, leader: url }, 'member added as a learner');
      return res.members.map(clusterMember);
    });
    return { state: 'existing', initialCluster: joiningCluster(members, self, config.initialCluster) };
  }
}
