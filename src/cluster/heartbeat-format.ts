/**
 * The heartbeat object: one per member in the store, under `members/`, written by that member's
 * sidecar every period and read by every other. The schema is the format; readers drop what they
 * do not know, so a newer writer never breaks an older reader.
 */
import { Type, type Static } from '@sinclair/typebox';
import { parseJson } from '../json.js';

/** What a waiting member holds; the recovery starts from the newest copy or the backups. */
const WaitingReportSchema = Type.Object(
  {
    /** Its data dir is missing, empty, corrupt, foreign or went back in time. */
    dataLost: Type.Boolean(),
    clusterId: Type.Optional(Type.String()),
    memberId: Type.Optional(Type.String()),
    raftIndex: Type.Optional(Type.Integer()),
    /** The highest revision its data can hold (the db's revision plus its WAL entries not yet applied). */
    revisionBound: Type.Optional(Type.Integer({ description: 'the highest revision its data can hold' })),
  },
  { description: 'its initializer waits for want of a cluster with quorum; what its data holds (the recovery starts from the newest copy or the backups)' },
);
export type WaitingReport = Static<typeof WaitingReportSchema>;

/**
 * What a sidecar last said about itself and its member. Kept in the store, outside the anchor's
 * `v2/` layout, so it survives when etcd is down: the initializer tells a live cluster from a dead
 * one by it, and spots a member whose data went back in time (revision lower than it announced).
 */
export const HeartbeatSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  /** hex, like memberIdHex() in src/etcd/members.ts */
  memberId: Type.Optional(Type.String()),
  clusterId: Type.Optional(Type.String()),
  role: Type.Union([Type.Literal('leader'), Type.Literal('follower'), Type.Literal('unknown')]),
  learner: Type.Optional(Type.Boolean()),
  /** Of this member's etcd when written. */
  revision: Type.Optional(Type.Integer()),
  raftIndex: Type.Optional(Type.Integer()),
  /** This sidecar's API base URL. */
  apiURL: Type.String(),
  /** RFC 3339, the writer's clock: shown to operators, never used to judge freshness (see heartbeat-ages.ts). */
  time: Type.String({ format: 'date-time', description: "the writer's clock, for people; freshness is judged by ageSeconds" }),
  /** Did the own member answer when written. */
  etcdUp: Type.Boolean({ description: 'whether the member answered when the heartbeat was written' }),
  /** Its etcd confirmed a leader at the last check: it is part of a cluster with quorum. */
  inQuorum: Type.Optional(Type.Boolean({ description: 'its etcd confirmed a leader at the last check' })),
  /** False when this sidecar never takes snapshots (--snapshot-leader=never): others stand in for its member. */
  backsUp: Type.Optional(Type.Boolean({ description: 'false for a sidecar with --snapshot-leader=never: another sidecar stands in while its member leads' })),
  /**
   * Set while this member's initializer waits because no cluster with quorum answers: what its data
   * holds, so that every member can choose the same copy to recover from (src/initializer/decide.ts).
   */
  waiting: Type.Optional(WaitingReportSchema),
});
export type Heartbeat = Static<typeof HeartbeatSchema>;

export const HEARTBEAT_DIR = 'members';

export function heartbeatName(memberName: string): string {
  return `${HEARTBEAT_DIR}/${memberName}.json`;
}

/** The heartbeat in `text`, or why it is not one. */
export function parseHeartbeat(text: string): Heartbeat | string {
  const parsed = parseJson(HeartbeatSchema, text);
  return parsed.ok ? parsed.value : parsed.problem;
}
