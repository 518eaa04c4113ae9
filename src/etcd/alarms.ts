/**
 * etcd's alarms as the members report them. Maintenance.Status lists, among its `errors`, every alarm
 * of the cluster's replicated alarm store as the AlarmMember's protobuf text ("memberID:<decimal>
 * alarm:NOSPACE "), so every member reports every member's alarms: an alarm belongs to the member
 * it names, not to the member that was asked. Other errors ("etcdserver: no leader") are not alarms.
 */
import { memberIdHex } from './members.js';

/** The alarm types etcd raises (AlarmType, less NONE). */
export const ALARM_TYPES = ['NOSPACE', 'CORRUPT'] as const;

export interface MemberAlarm {
  /** The member the alarm is raised for, in hex as etcd prints IDs. */
  memberId: string;
  alarm: string;
}

const ALARM_TEXT = /memberID:\s*(\d+)\s+alarm:\s*([A-Z_]+)/;

/** The alarm an entry of Status.errors states, or undefined for another kind of error. */
export function parseAlarm(error: string): MemberAlarm | undefined {
  const m = ALARM_TEXT.exec(error);
  return m ? { memberId: memberIdHex(m[1] as string), alarm: m[2] as string } : undefined;
}

/** The alarm's type an entry of Status.errors states (NOSPACE), or the entry itself when it is no alarm. */
export function alarmType(error: string): string {
  return parseAlarm(error)?.alarm ?? error;
}

/** Every alarm any reachable member reported, once each. */
export function clusterAlarms(status: { members: readonly { status?: { alarms: readonly string[] } | undefined }[] }): MemberAlarm[] {
  const found = new Map<string, MemberAlarm>();
  for (const m of status.members) {
    for (const e of m.status?.alarms ?? []) {
      const a = parseAlarm(e);
      if (a) found.set(`${a.memberId}/${a.alarm}`, a);
    }
  }
  return [...found.values()];
}
