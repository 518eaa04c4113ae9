import { inspectDataDir } from '../etcd/datadir.js';
import { releaseBinDir } from '../etcd/tools.js';
import { restore, restoreFromDataDir, restoreOptionsFromConfig } from '../restore/index.js';
import type { ActionContext } from './context.js';
import type { InitFacts, Verdict } from './decide.js';
import type { EtcdStart } from './etcd-config.js';

/**
 * A restore of this member's data dir, from the backups or (a recovery from the newest surviving
 * copy) from its own data. A multi-member cluster is recovered as a one-member cluster the others
 * join as learners, so no member ever starts from a copy the others do not share; its token names
 * the recovery epoch, so each recovery makes a cluster ID no earlier one had.
 */
export async function restoreMember(ctx: ActionContext, facts: InitFacts, recovery: Verdict['recovery']): Promise<EtcdStart> {
  const { config, store, log } = ctx.deps;
  const initialCluster = config.initialCluster.length > 1 ? config.initialCluster.filter((m) => m.name === config.name) : config.initialCluster;
  // A restore from the backups picks the release the backups were taken from (release-choice.ts);
  // the data dir's own copy is replayed by the release the cluster runs (--etcd-version).
  const binDir = releaseBinDir(config.etcdBinDir || undefined, config.etcdVersion || undefined);
  const identity = {
    ...restoreOptionsFromConfig(config, initialCluster),
    ...(recovery ? { initialClusterToken: `${config.initialClusterToken}-recovery-${recovery.epoch}` } : {}),
  };
  const restoreLog = log.child({ part: 'restore' });
  if (recovery?.source === 'local-copy') {
    ctx.update({ progress: 'recovering the cluster from the data dir: replaying its WAL in a temporary etcd' });
    const result = await restoreFromDataDir({ dataDir: config.dataDir, ...identity, ...(binDir ? { etcdBinDir: binDir } : {}), log: restoreLog });
    log.info({ revision: result.revision, epoch: recovery.epoch }, 'recovered the cluster from the newest surviving copy, this data dir');
  } else {
    // Up to the end of the contiguous chain: a gap after it must not turn into a restore that
    // fails and is retried forever (decide() compared the local data with that end too).
    const chain = facts.backups.chain;
    if (chain?.gaps) log.warn({ lastRevision: chain.lastRevision, gaps: chain.gaps }, 'the backups have a gap: restoring up to the end of their contiguous part');
    ctx.update({ progress: 'restoring from the backups' });
    const result = await restore({
      store,
      dataDir: config.dataDir,
      replaceExisting: true,
      ...identity,
      ...(chain?.gaps ? { toRevision: chain.lastRevision } : {}),
      log: restoreLog,
      signal: ctx.signal,
      onProgress: (p) => ctx.update({ progress: `restoring: ${p.phase}, revision ${p.revision} of ${p.targetRevision} (${p.deltasApplied}/${p.deltasTotal} deltas)` }),
    });
    log.info(
      { revision: result.revision, full: result.fullSnapshot, deltas: result.deltasApplied, etcdMinor: result.etcd.minor, local: facts.local.state, ...(recovery ? { epoch: recovery.epoch } : {}) },
      'restored from the backups',
    );
  }
  // The restored data dir starts a new raft log: the raft index the heartbeat carried from the old
  // one would make it look as if it went back in time at the next start.
  const restored = await inspectDataDir(config.dataDir);
  ctx.deps.heartbeat?.remember({
    ...(restored.memberId ? { memberId: restored.memberId } : {}),
    ...(restored.clusterId ? { clusterId: restored.clusterId } : {}),
    ...(restored.raftIndex !== undefined ? { raftIndex: restored.raftIndex } : {}),
    ...(restored.revision !== undefined ? { revision: restored.revision } : {}),
  });
  await ctx.deps.heartbeat?.writeNow().catch((err: Error) => log.warn({ err: err.message }, 'heartbeat not published'));
  return { state: 'new', initialCluster };
}
