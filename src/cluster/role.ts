// The backup-leader role as a pure state machine: the role loop feeds it one check result per tick
// and acts on the role it returns. No I/O here, so every transition is unit-tested.

export type Role = 'leader' | 'follower' | 'unknown';

/** What one check of the own etcd member established. */
export type CheckResult =
  /** The own member is the raft leader and a quorum-confirming read answered before the deadline. */
  | { kind: 'leader'; memberId: string; /** set when standing in for the etcd leader's silent sidecar */ standInFor?: string }
  /** The own member answered and names another member as leader (learners always land here). */
  | { kind: 'follower'; memberId: string; leaderId: string }
  /** No confirmed answer: the member did not answer, knows no leader, or leads without quorum. */
  | { kind: 'unconfirmed'; reason: string };

export interface RoleState {
  role: Role;
  /** Checks in a row without a confirmed answer. */
  unconfirmed: number;
  /** The etcd leader the last confirmed check named (hex), while the role is not unknown. */
  leaderId?: string;
  /** Why the role is what it is (shown in /status). */
  reason: string;
}

export const INITIAL_ROLE: RoleState = { role: 'unknown', unconfirmed: 0, reason: 'no check has answered yet' };

/**
 * The role after one more check. A confirmed answer takes effect at once (a leader that sees another
 * member lead steps down at the first such answer). Unconfirmed checks keep the current role until
 * `lostAfter` of them in a row: one slow answer on a loaded machine must not hand the backups over,
 * while a member that stays silent or lost quorum stops snapshotting within `lostAfter` periods.
 */
export function nextRole(state: RoleState, check: CheckResult, lostAfter: number): RoleState {
  switch (check.kind) {
    case 'leader':
      if (check.standInFor !== undefined) {
        return { role: 'leader', unconfirmed: 0, leaderId: check.standInFor, reason: `standing in: the sidecar of raft leader ${check.standInFor} sends no heartbeat; the own member reaches quorum` };
      }
      return { role: 'leader', unconfirmed: 0, leaderId: check.memberId, reason: 'the own etcd member is the raft leader and reaches quorum' };
    case 'follower':
      return { role: 'follower', unconfirmed: 0, leaderId: check.leaderId, reason: `etcd member ${check.leaderId} is the raft leader` };
    case 'unconfirmed': {
      const unconfirmed = state.unconfirmed + 1;
      if (state.role === 'unknown' || unconfirmed >= lostAfter) {
        return { role: 'unknown', unconfirmed, reason: `${unconfirmed} check(s) in a row without a confirmed answer; last: ${check.reason}` };
      }
      const kept: RoleState = { role: state.role, unconfirmed, reason: `kept after ${unconfirmed} unconfirmed check(s) of ${lostAfter}; last: ${check.reason}` };
      if (state.leaderId !== undefined) kept.leaderId = state.leaderId;
      return kept;
    }
  }
}

/**
 * The role this sidecar acts on and announces, given --snapshot-leader: `always` acts as leader
 * whatever etcd says (existing single-sidecar setups), `never` never leads but still follows a
 * known leader (so its API forwards to it).
 */
export function effectiveRole(mode: 'elect' | 'always' | 'never', elected: Role): Role {
  if (mode === 'always') return 'leader';
  if (mode === 'never') return elected === 'leader' ? 'follower' : elected;
  return elected;
}

/** A member's last heartbeat as the stand-in rule sees it. */
export interface PeerBeat {
  name: string;
  memberId?: string;
  learner?: boolean;
  etcdUp: boolean;
  ageMs: number;
  /** False for a sidecar that never takes snapshots (--snapshot-leader=never). */
  backsUp?: boolean;
}

/**
 * Whether this sidecar stands in for a backup leader whose sidecar is gone (killed, crash-looping):
 * its etcd member still leads, so no sidecar would otherwise take snapshots. The etcd leader's
 * sidecar counts as gone when its heartbeat is older than the TTL, says it never backs up
 * (--snapshot-leader=never), or is absent while this sidecar has run longer than the TTL (a fresh
 * start has not read the heartbeats yet), and only while this
 * sidecar's own heartbeat reads back fresh. Among the live voting
 * followers the one with the smallest name stands in, so every follower that reads the same
 * heartbeats picks the same one; a short disagreement only overlaps deltas, which the chain allows.
 */
export function shouldStandIn(opts: { self: string; leaderId: string; beats: readonly PeerBeat[]; ttlMs: number; runningMs: number; directoryRead: boolean }): boolean {
  if (!opts.directoryRead) return false;
  // Its own heartbeat stale too: the store (or the reading of it) is what fails, not the leader's
  // sidecar, and every follower would stand in at once.
  const own = opts.beats.find((b) => b.name === opts.self);
  if (!own || own.ageMs > opts.ttlMs) return false;
  const leaderBeat = opts.beats.find((b) => b.memberId === opts.leaderId);
  // A leader whose sidecar is alive but never backs up is covered like one whose sidecar is gone.
  const covered = leaderBeat ? leaderBeat.ageMs <= opts.ttlMs && leaderBeat.backsUp !== false : opts.runningMs <= opts.ttlMs;
  if (covered) return false;
  const live = opts.beats.filter((b) => b.name !== opts.self && b.memberId !== opts.leaderId && !b.learner && b.backsUp !== false && b.etcdUp && b.ageMs <= opts.ttlMs).map((b) => b.name);
  return [...live, opts.self].sort()[0] === opts.self;
}
