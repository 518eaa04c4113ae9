/**
 * Recovery from etcd's space alarm. A member whose db reaches --quota-backend-bytes raises NOSPACE
 * and the whole cluster refuses writes until someone makes room and disarms the alarm, which etcd
 * never does by itself. With --auto-recover-nospace the backup leader's sidecar does what an
 * operator would: compact the history up to the current revision minus a retained window, defragment
 * every member (the round runs despite the alarm), then disarm it; every step is logged.
 */
import type { ClusterStatus } from '../etcd/status.js';
import type { RaisedAlarm } from '../etcd/maintenance.js';
import type { Logger } from '../logger.js';
import type { DefragReport } from './defragmenter.js';
import { clusterAlarms } from '../etcd/alarms.js';

export const NOSPACE = 'NOSPACE';

export interface NospaceDeps {
  /** Whether this sidecar is the backup leader (only it recovers). */
  leads(): boolean;
  compact(revision: number): Promise<void>;
  /** A defragmentation round of every member, despite NOSPACE. */
  defragment(): Promise<DefragReport>;
  alarms(): Promise<RaisedAlarm[]>;
  disarm(memberId: string): Promise<void>;
  log: Logger;
}

export interface NospaceSettings {
  /** Revisions kept below the current one when compacting (a watcher that lags less still resumes). */
  retainedRevisions: number;
  /** After a recovery that did not clear the alarm, the next try waits this long. */
  retryAfterMs: number;
}

/** The members reporting NOSPACE in a health round. */
export function membersOutOfSpace(status: ClusterStatus): string[] {
  const ids = new Set(
    clusterAlarms(status)
      .filter((a) => a.alarm === NOSPACE)
      .map((a) => a.memberId),
  );
  return status.members.filter((m) => ids.has(m.id)).map((m) => m.name || m.id);
}

/** The revision to compact to: the newest a member reported minus the window, never below 1. */
export function compactionTarget(status: ClusterStatus, retainedRevisions: number): number | undefined {
  const newest = Math.max(0, ...status.members.map((m) => m.status?.revision ?? 0));
  const target = newest - retainedRevisions;
  return target >= 1 ? target : undefined;
}

export class NospaceRecovery {
  private running = false;
  private notBefore = 0;
  lastOutcome: { at: string; members: string[]; cleared: boolean; detail: string } | undefined;

  constructor(
    private readonly deps: NospaceDeps,
    private readonly settings: NospaceSettings,
  ) {}

  /** Called with every health round; starts a recovery when a member is out of space. */
  observe(status: ClusterStatus): void {
    const full = membersOutOfSpace(status);
    if (full.length === 0 || this.running || !this.deps.leads() || performance.now() < this.notBefore) return;
    this.running = true;
    void this.recover(status, full).finally(() => {
      this.running = false;
    });
  }

  private async recover(status: ClusterStatus, full: string[]): Promise<void> {
    const { log } = this.deps;
    log.warn({ members: full }, 'NOSPACE: recovering (compact, defragment every member, disarm)');
    let detail: string;
    let cleared = false;
    try {
      const target = compactionTarget(status, this.settings.retainedRevisions);
      if (target === undefined) log.warn({ retainedRevisions: this.settings.retainedRevisions }, 'NOSPACE: the history is shorter than the retained window; nothing to compact');
      else {
        await this.deps.compact(target);
        log.info({ revision: target }, 'NOSPACE: history compacted');
      }
      const report = await this.deps.defragment();
      log.info({ members: report.members.map((m) => ({ name: m.name, outcome: m.outcome, before: m.dbSizeBefore, after: m.dbSizeAfter })), stopped: report.stopped }, 'NOSPACE: members defragmented');
      if (report.stopped) throw new Error(`the defragmentation stopped: ${report.stopped}`);
      const alarms = (await this.deps.alarms()).filter((a) => a.alarm === NOSPACE);
      for (const a of alarms) {
        await this.deps.disarm(a.memberId);
        log.info({ memberId: a.memberId }, 'NOSPACE: alarm disarmed');
      }
      cleared = true;
      detail = `compacted to ${target ?? '-'}, defragmented ${report.members.filter((m) => m.outcome === 'defragmented').length} member(s), disarmed ${alarms.length} alarm(s)`;
      log.info({ detail }, 'NOSPACE: recovered; writes are accepted again');
    } catch (err) {
      detail = (err as Error).message;
      this.notBefore = performance.now() + this.settings.retryAfterMs;
      log.error({ err: detail, retryInMs: this.settings.retryAfterMs }, 'NOSPACE: recovery failed; retried later');
    }
    this.lastOutcome = { at: new Date().toISOString(), members: full, cleared, detail };
  }
}
