/**
 * Which members a defragmentation round may defragment, and in what order. Pure: the facts are
 * one health round of the whole cluster (etcd/status.ts).
 *
 * A member is busy while it defragments: it answers nothing, and a leader that stops answering its
 * clients may lose its place. So a round runs only while every member is healthy and the voters
 * keep a quorum with one of them busy; followers go one at a time, the raft leader last, so that
 * leadership moves at most once; a member with little free space in its db is skipped (the round
 * would block it for nothing).
 */
import { alarmType } from '../etcd/alarms.js';
import type { ClusterStatus, MemberHealth } from '../etcd/status.js';

export interface DefragTarget {
  id: string;
  name: string;
  clientURL: string;
  isLeader: boolean;
  dbSize: number;
  dbSizeInUse: number;
}

export interface DefragSkip {
  id: string;
  name: string;
  reason: string;
}

export type DefragPlan = { go: false; reason: string } | { go: true; order: DefragTarget[]; skipped: DefragSkip[] };

export interface DefragPlanOptions {
  /** A member whose db has less free space than this percentage of its size is skipped (0 defragments all). */
  thresholdPercent: number;
  /** Only this member (by name); the rules for the cluster still hold. */
  only?: string;
  /** An alarm the round may run despite (NOSPACE: defragmentation is its cure). */
  tolerateAlarm?: string;
}

/** Whether the cluster can spare one voter for a while: a busy voter must not cost the quorum. */
export function quorumWithOneBusy(voters: number, healthyVoters: number): boolean {
  return healthyVoters - 1 > voters / 2;
}

export function planDefrag(status: ClusterStatus, o: DefragPlanOptions): DefragPlan {
  const usable = (m: MemberHealth): boolean => m.healthy || onlyTolerated(m.status?.alarms ?? [], m.status?.reachable === true && m.status.leaderId !== '0', o.tolerateAlarm);
  const voting = status.members.filter((m) => !m.isLearner);
  // A NOSPACE cluster reports no healthy member; tolerating the alarm, its answering voters count.
  const quorum = o.tolerateAlarm === undefined ? status.hasQuorum : voting.filter(usable).length > voting.length / 2;
  if (!quorum) return { go: false, reason: 'the cluster has no quorum' };
  const unhealthy = status.members.filter((m) => !usable(m));
  if (unhealthy.length > 0) return { go: false, reason: `not every member is healthy (${unhealthy.map((m) => `${m.name || m.id}: ${m.error ?? 'unhealthy'}`).join('; ')})` };
  const voters = status.members.filter((m) => !m.isLearner).length;
  if (!quorumWithOneBusy(voters, voters))
    return { go: false, reason: `${voters} voting member(s) cannot keep a quorum while one is busy defragmenting; defragment in a maintenance window (etcdctl defrag)` };
  const chosen = o.only === undefined ? status.members : status.members.filter((m) => m.name === o.only);
  if (o.only !== undefined && chosen.length === 0) return { go: false, reason: `no member named "${o.only}" in the cluster` };
  const order: DefragTarget[] = [];
  const skipped: DefragSkip[] = [];
  for (const m of chosen) {
    const s = m.status;
    const url = m.clientURLs[0];
    if (!s || url === undefined || s.dbSize === undefined) {
      skipped.push({ id: m.id, name: m.name, reason: 'no status or client URL' });
      continue;
    }
    const inUse = s.dbSizeInUse ?? s.dbSize;
    const freePercent = s.dbSize === 0 ? 0 : (100 * (s.dbSize - inUse)) / s.dbSize;
    if (freePercent < o.thresholdPercent) {
      skipped.push({ id: m.id, name: m.name, reason: `${freePercent.toFixed(1)}% of its ${s.dbSize}-byte db is free, below --defrag-threshold ${o.thresholdPercent}%` });
      continue;
    }
    order.push({ id: m.id, name: m.name, clientURL: url, isLeader: m.isLeader, dbSize: s.dbSize, dbSizeInUse: inUse });
  }
  order.sort((a, b) => Number(a.isLeader) - Number(b.isLeader) || a.name.localeCompare(b.name));
  return { go: true, order, skipped };
}

/**
 * The next member of a round, from a plan made just now: the first of those still to do in the
 * plan's order, so the member leading now goes after every other one left, even when leadership
 * moved since the round began (the round's first order put another member last).
 */
export function nextTarget(plan: Extract<DefragPlan, { go: true }>, remaining: ReadonlySet<string>): DefragTarget | undefined {
  return plan.order.find((t) => remaining.has(t.name));
}

/** Unhealthy only because of the tolerated alarm: answering, with a leader. */
function onlyTolerated(alarms: readonly string[], answersWithLeader: boolean, tolerated: string | undefined): boolean {
  return tolerated !== undefined && answersWithLeader && alarms.length > 0 && alarms.every((a) => alarmType(a) === tolerated);
}
