/**
 * Maintenance calls that change a member's state: defragmentation, compaction, alarms. etcd blocks every request to a
 * member while it defragments (reads and writes wait, a leader keeps heartbeating), so the caller
 * chooses when and the deadline bounds how long the caller waits for the answer.
 */
import { AlarmAction, AlarmType } from 'etcd3';
import { callWithin } from './call-deadline.js';
import type { EtcdMember } from './client.js';
import { memberIdHex } from './members.js';

export async function defragmentMember(member: EtcdMember, timeoutMs: number): Promise<void> {
  await callWithin('defragment', timeoutMs, (deadline) => member.maintenance.defragment({ deadline }));
}

/** An alarm a member raised, with etcd's names (NOSPACE, CORRUPT) and the member's hex ID. */
export interface RaisedAlarm {
  memberId: string;
  alarm: string;
}

/** The alarms raised in the cluster, as the member `via` knows them. */
export async function listAlarms(via: EtcdMember, timeoutMs: number): Promise<RaisedAlarm[]> {
  const res = await callWithin('alarm list', timeoutMs, (deadline) => via.maintenance.alarm({ action: AlarmAction.Get }, { deadline }));
  // The enum arrives as its number or its name depending on the loader, whatever the types say: one spelling out.
  const raw = res.alarms as { memberID: string | number; alarm: string | number }[];
  return raw.map((a) => ({ memberId: memberIdHex(String(a.memberID)), alarm: (typeof a.alarm === 'number' ? (AlarmType[a.alarm] ?? String(a.alarm)) : a.alarm).toUpperCase() }));
}

/** Disarms one member's NOSPACE alarm: the cluster accepts writes again (once the member has room). */
export async function disarmNospace(via: EtcdMember, memberId: string, timeoutMs: number): Promise<void> {
  await callWithin('alarm disarm', timeoutMs, (deadline) =>
    via.maintenance.alarm({ action: AlarmAction.Deactivate, memberID: BigInt(`0x${memberId}`).toString(), alarm: AlarmType.Nospace }, { deadline }),
  );
}

/** Compacts the keyspace's history up to `revision` (physically: the freed pages are reusable when it returns). */
export async function compactHistory(via: EtcdMember, revision: number, timeoutMs: number): Promise<void> {
  await callWithin('compact', timeoutMs, (deadline) => via.kv.compact({ revision: String(revision), physical: true }, { deadline }));
}
