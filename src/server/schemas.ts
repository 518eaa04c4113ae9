import { HeartbeatSchema } from '../cluster/heartbeat-format.js';
import { Type, type Static } from '@sinclair/typebox';

// The HTTP contract. Routes use these schemas to validate and serialize; openapi/openapi.yaml is
// generated from the routes, so this file is where the API is defined.

export const ErrorBody = Type.Object({
  error: Type.String({ description: 'machine-readable code, e.g. not_ready, bad_request' }),
  message: Type.String({ description: 'what went wrong, for a human' }),
});

export const EndpointStatus = Type.Object({
  endpoint: Type.String(),
  reachable: Type.Boolean(),
  latencyMs: Type.Integer({ description: 'time the status probe took' }),
  error: Type.Optional(Type.String()),
  memberId: Type.Optional(Type.String({ description: 'hex, as etcdctl prints it' })),
  clusterId: Type.Optional(Type.String()),
  leaderId: Type.Optional(Type.String({ description: "the leader this member follows; '0' when it has none" })),
  revision: Type.Optional(Type.Integer()),
  dbSize: Type.Optional(Type.Integer({ description: 'bytes allocated on disk' })),
  dbSizeInUse: Type.Optional(Type.Integer({ description: 'bytes in use' })),
  raftTerm: Type.Optional(Type.Integer()),
  raftIndex: Type.Optional(Type.Integer()),
  raftAppliedIndex: Type.Optional(Type.Integer()),
  version: Type.Optional(Type.String()),
  isLearner: Type.Optional(Type.Boolean()),
  alarms: Type.Array(Type.String()),
});

export const MemberHealth = Type.Object({
  id: Type.String(),
  name: Type.String({ description: 'empty for a member added but never started' }),
  peerURLs: Type.Array(Type.String()),
  clientURLs: Type.Array(Type.String()),
  isLearner: Type.Boolean(),
  started: Type.Boolean(),
  isLeader: Type.Boolean(),
  healthy: Type.Boolean({ description: 'answered its status probe, knows a leader, reports no alarm' }),
  error: Type.Optional(Type.String()),
  status: Type.Optional(EndpointStatus),
});

const GcLocks = Type.Object(
  {
    ranAt: Type.String({ format: 'date-time', description: 'when retention last ran' }),
    deleted: Type.Integer({ description: 'snapshots that run deleted' }),
    lockedUntil: Type.Array(
      Type.Object({
        name: Type.String(),
        retainUntil: Type.Optional(Type.String({ format: 'date-time', description: 'absent when the store refused the delete without a date (a legal hold, a bucket policy)' })),
        reason: Type.Union([Type.Literal('lock'), Type.Literal('chain')], { description: 'lock: the object is retained; chain: kept with the retained deltas that follow its full snapshot' }),
      }),
      { description: 'snapshots retention would delete but a lock holds, the soonest free first' },
    ),
    next: Type.Optional(Type.Object({ name: Type.String(), at: Type.String({ format: 'date-time' }) }, { description: 'the held snapshot deleted first, by the first retention run after `at`' })),
  },
  { description: 'the last retention run (on the backup leader): what it deleted, what locks (--store-retention, Object Lock) hold back and until when' },
);

const BackupPoint = Type.Object({
  name: Type.String(),
  lastRevision: Type.Integer(),
  uploadedAt: Type.String({ format: 'date-time' }),
});

const MemberDefragBody = Type.Object({
  id: Type.String(),
  name: Type.String(),
  outcome: Type.Union([Type.Literal('defragmented'), Type.Literal('skipped'), Type.Literal('failed')]),
  raftLeader: Type.Optional(Type.Boolean({ description: 'it was the raft leader when its turn came' })),
  reason: Type.Optional(Type.String({ description: 'why it was skipped or failed' })),
  dbSizeBefore: Type.Optional(Type.Integer()),
  dbSizeAfter: Type.Optional(Type.Integer()),
  startedAt: Type.Optional(Type.String({ format: 'date-time' })),
  durationMs: Type.Optional(Type.Integer({ description: 'until the member answered healthy again' })),
});

export const DefragReportBody = Type.Object(
  {
    reason: Type.String({ description: 'what started the round (schedule, a request)' }),
    startedAt: Type.String({ format: 'date-time' }),
    finishedAt: Type.String({ format: 'date-time' }),
    members: Type.Array(MemberDefragBody, { description: 'in the order they were handled: skipped members first, then followers one at a time, the raft leader last' }),
    stopped: Type.Optional(Type.String({ description: 'why the round stopped before its plan was done' })),
  },
  { description: 'one defragmentation round' },
);

export const DefragQuery = Type.Object({
  member: Type.Optional(Type.String({ minLength: 1, description: 'defragment only this member (by name); default: every member over --defrag-threshold' })),
});

const DefragStatus = Type.Object(
  {
    running: Type.Boolean(),
    schedule: Type.String({ description: '--defrag-schedule' }),
    lastByMember: Type.Array(MemberDefragBody, { description: "each member's last defragmentation this sidecar ran" }),
    lastRound: Type.Optional(DefragReportBody),
    nospaceRecovery: Type.Optional(
      Type.Object(
        { at: Type.String({ format: 'date-time' }), members: Type.Array(Type.String()), cleared: Type.Boolean(), detail: Type.String() },
        { description: 'the last recovery from NOSPACE (--auto-recover-nospace)' },
      ),
    ),
  },
  { description: 'defragmentation rounds run by this sidecar (the backup leader runs them)' },
);

export const StatusBody = Type.Object({
  member: Type.Object({
    name: Type.String(),
    id: Type.Optional(Type.String()),
    clientURLs: Type.Array(Type.String()),
    isLearner: Type.Optional(Type.Boolean()),
    isLeader: Type.Boolean(),
    healthy: Type.Boolean(),
  }),
  role: Type.Union([Type.Literal('leader'), Type.Literal('follower'), Type.Literal('unknown')], {
    description: 'backup role of this sidecar (leader: takes the snapshots); unknown while its member has not confirmed a role (etcd down, no quorum)',
  }),
  cluster: Type.Object({
    id: Type.Optional(Type.String()),
    leader: Type.Optional(Type.Object({ id: Type.String(), name: Type.String() })),
    voters: Type.Integer(),
    healthyVoters: Type.Integer(),
    hasQuorum: Type.Boolean(),
    memberListError: Type.Optional(Type.String()),
    alarms: Type.Array(Type.Object({ member: Type.String(), alarm: Type.String({ description: 'NOSPACE (writes refused until disarmed) or CORRUPT' }) }), {
      description: 'alarms members report right now',
    }),
  }),
  members: Type.Array(MemberHealth),
  endpoints: Type.Array(Type.String(), { description: 'client URLs requests are balanced over (started voting members)' }),
  store: Type.Optional(
    Type.Object(
      {
        url: Type.String(),
        healthy: Type.Boolean(),
        latencyMs: Type.Integer(),
        error: Type.Optional(Type.String()),
        checkedAt: Type.String({ format: 'date-time' }),
      },
      { description: 'the last probe of the backup store (absent until the first one finished)' },
    ),
  ),
  secondaryStore: Type.Optional(
    Type.Object(
      {
        url: Type.String({ description: '--secondary-store' }),
        running: Type.Boolean({ description: 'a sync is copying now' }),
        lastSuccess: Type.Optional(
          Type.Object({
            at: Type.String({ format: 'date-time', description: 'when the last successful sync started' }),
            durationMs: Type.Integer(),
            copied: Type.Integer({ description: 'snapshots copied by it' }),
            skipped: Type.Integer({ description: 'snapshots the second store already held' }),
            bytes: Type.Integer(),
            deleted: Type.Integer({ description: 'removed there by the retention policy' }),
          }),
        ),
        lastError: Type.Optional(Type.Object({ at: Type.String({ format: 'date-time' }), message: Type.String() })),
        failuresInARow: Type.Integer({ description: 'syncs failed since the last success; backups to --store go on meanwhile' }),
      },
      { description: "the backup leader's copies to the --secondary-store (absent without one; the backup leader's sidecar is the one that syncs)" },
    ),
  ),
  backup: Type.Object(
    {
      takesSnapshots: Type.Boolean({ description: 'whether this sidecar runs the snapshotters' }),
      problem: Type.Optional(Type.String({ description: 'why snapshots are not being taken or failed last' })),
      lastFull: Type.Optional(BackupPoint),
      lastDelta: Type.Optional(BackupPoint),
      uploadedRevision: Type.Optional(Type.Integer({ description: 'last revision in the store (full or delta)' })),
      revisionLag: Type.Optional(Type.Integer({ description: "etcd's revision minus uploadedRevision" })),
      secondsSinceLastUpload: Type.Optional(Type.Number()),
      etcdVersion: Type.Optional(Type.String({ description: "the version of the etcd this sidecar backs up, as last read: what its snapshots record (a restore runs that release's tools)" })),
      restoreEstimate: Type.Optional(
        Type.Object(
          {
            seconds: Type.Number({ description: 'estimated time to restore the chain as stored now: fullSeconds + replaySeconds' }),
            objectiveSeconds: Type.Number({ description: '--restore-time-objective (0: disabled); a full snapshot is taken once seconds passes it' }),
            fullSeconds: Type.Number({ description: "the fixed part: the temporary etcd's start and the full snapshot's db, from restores measured on this member or the defaults (fullSource)" }),
            fullSource: Type.String({ description: 'where fullSeconds comes from' }),
            replaySeconds: Type.Number({ description: 'revisions / rate' }),
            revisions: Type.Integer({ description: 'revisions in the deltas since the full snapshot' }),
            fullRevision: Type.Integer({ description: "the chain's full snapshot's revision" }),
            note: Type.Optional(Type.String({ description: 'why the objective takes no full snapshot although the estimate passes it (the fixed part alone does)' })),
            rate: Type.Object({
              revisionsPerSecond: Type.Number(),
              measured: Type.Boolean({ description: 'false: the default rate, no restore on this member measured one yet' }),
              source: Type.String({ description: 'where the rate comes from' }),
            }),
          },
          { description: "how long a restore of the store's chain would take now (while this sidecar takes snapshots)" },
        ),
      ),
      gc: Type.Optional(GcLocks),
    },
    { description: "this sidecar's snapshotting" },
  ),
  checkedAt: Type.String({ format: 'date-time' }),
  durationMs: Type.Integer(),
  defrag: Type.Optional(DefragStatus),
  election: Type.Optional(
    Type.Object(
      {
        mode: Type.Union([Type.Literal('elect'), Type.Literal('always'), Type.Literal('never')], { description: '--snapshot-leader' }),
        reason: Type.String({ description: 'why the role is what it is (the last check of the own member)' }),
        roleChanges: Type.Integer({ description: 'role changes since the sidecar started' }),
        apiURL: Type.String({ description: 'the API URL this sidecar announces in its heartbeat' }),
        backupLeader: Type.Optional(
          Type.Object(
            { name: Type.String(), apiURL: Type.String(), memberId: Type.Optional(Type.String()) },
            { description: 'the sidecar taking snapshots: this one, or the one a fresh heartbeat announces; followers forward snapshot requests to it' },
          ),
        ),
        heartbeats: Type.Array(
          // The heartbeat object as the store holds it (its schema is its format), and how this sidecar sees it.
          Type.Composite([
            HeartbeatSchema,
            Type.Object({
              ageSeconds: Type.Number({ description: "time since this sidecar saw the heartbeat change, by its own monotonic clock (the writer's clock is never trusted)" }),
              stale: Type.Boolean({ description: 'unchanged for longer than --heartbeat-ttl' }),
            }),
          ]),
          { description: "every member's last heartbeat in the store" },
        ),
        heartbeatError: Type.Optional(Type.String({ description: 'why the last heartbeat write or read failed' })),
      },
      { description: 'backup-leader election and member heartbeats' },
    ),
  ),
});
export type StatusBody = Static<typeof StatusBody>;

export const HealthBody = Type.Object({ status: Type.Literal('ok') });

export const ReadyBody = Type.Object({
  ready: Type.Boolean(),
  checks: Type.Array(Type.Object({ name: Type.String(), ok: Type.Boolean(), message: Type.String() })),
});
export type ReadyBody = Static<typeof ReadyBody>;

const Kind = Type.Union([Type.Literal('full'), Type.Literal('delta')]);
const CompressionName = Type.Union([Type.Literal('gzip'), Type.Literal('zlib'), Type.Literal('lzw'), Type.Literal('none')]);

export const SnapshotRecordBody = Type.Object(
  {
    name: Type.String({ description: 'object name under the store prefix, in the v2 layout' }),
    kind: Kind,
    startRevision: Type.Integer(),
    lastRevision: Type.Integer({ description: 'for a full snapshot: the revision inside the db' }),
    createdAt: Type.String({ format: 'date-time' }),
    compression: CompressionName,
    size: Type.Integer({ description: 'bytes stored' }),
    sha256: Type.String({ description: 'sha256 of the stored object' }),
    uncompressedSize: Type.Integer({ description: 'full: db bytes; delta: JSON payload bytes' }),
    events: Type.Optional(Type.Integer({ description: 'delta: number of events' })),
    durationMs: Type.Integer(),
    etcdVersion: Type.Optional(Type.String({ description: 'the version of the etcd it was taken from, also on the object as ebs-etcd-version (absent when it could not be read)' })),
  },
  { description: 'a snapshot this sidecar just uploaded' },
);

export const NoDeltaBody = Type.Object({
  uploaded: Type.Literal(false),
  message: Type.String(),
});

export const SnapshotRefBody = Type.Object({
  name: Type.String(),
  kind: Kind,
  startRevision: Type.Integer(),
  lastRevision: Type.Integer(),
  createdAt: Type.String({ format: 'date-time', description: 'to the second, from the name' }),
  compression: CompressionName,
  final: Type.Boolean(),
});

export const LatestBody = Type.Object({
  full: Type.Union([SnapshotRefBody, Type.Null()], { description: 'the full snapshot a restore starts from' }),
  deltas: Type.Array(
    Type.Object({
      snapshot: SnapshotRefBody,
      skipThrough: Type.Integer({ description: 'events up to this revision are already applied before this delta (overlap)' }),
    }),
    { description: 'the deltas a restore applies after it, in order' },
  ),
  lastRevision: Type.Integer({ description: 'the revision a restore of this chain reaches' }),
  contiguous: Type.Boolean(),
  gaps: Type.Array(Type.Object({ from: Type.Integer(), to: Type.Integer() }), { description: 'revisions no stored delta covers' }),
  strandedDeltas: Type.Integer({ description: 'deltas stored after a gap, unusable until a newer full snapshot' }),
});
export type LatestBody = Static<typeof LatestBody>;

export const SnapshotListQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  pageToken: Type.Optional(Type.String({ maxLength: 2048, description: 'nextPageToken of the previous page' })),
});

export const SnapshotListBody = Type.Object({
  snapshots: Type.Array(SnapshotRefBody, { description: 'newest first' }),
  nextPageToken: Type.Optional(Type.String()),
});

export const InitializeQuery = Type.Object({
  wait: Type.Integer({ minimum: 0, maximum: 3600, default: 0, description: 'seconds to block until initialization is done' }),
});

export const InitializeBody = Type.Object({
  state: Type.Union([Type.Literal('New'), Type.Literal('Progress'), Type.Literal('Successful'), Type.Literal('Failed')]),
  decision: Type.Optional(
    Type.Union(
      ['use-existing', 'join-existing', 'join-as-learner', 'replace', 'restore', 'wait', 'bootstrap'].map((d) => Type.Literal(d)),
      { description: 'the latest decision (docs/operations.md explains each)' },
    ),
  ),
  reason: Type.Optional(Type.String({ description: 'why, in words' })),
  progress: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  startedAt: Type.Optional(Type.String({ format: 'date-time' })),
  finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
  rounds: Type.Integer({ description: 'rounds of fact gathering so far' }),
  generation: Type.Integer({ description: 'counts the initializations of this sidecar process' }),
  stopEtcd: Type.Optional(
    Type.Boolean({
      description:
        "this member's etcd must stop before initialization goes on (its cluster lost quorum and its data takes part in a recovery); the run-etcd launcher stops it, then initializes and starts it again",
    }),
  ),
});
export type InitializeBody = Static<typeof InitializeBody>;
