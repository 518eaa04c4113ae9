import { Type, type Static } from '@sinclair/typebox';

// The HTTP contract. Routes use these schemas to validate and serialize; openapi/openapi.yaml is
// generated from the routes, so this file is where the API is defined.

export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'machine-readable code, e.g. not_ready, bad_request' }),
    message: Type.String({ description: 'what went wrong, for a human' }),
  }
);

export const EndpointStatus = Type.Object(
  {
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
  }
);

export const MemberHealth = Type.Object(
  {
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
  }
);

export const StatusBody = Type.Object(
  {
    member: Type.Object({
      name: Type.String(),
      id: Type.Optional(Type.String()),
      clientURLs: Type.Array(Type.String()),
      isLearner: Type.Optional(Type.Boolean()),
      isLeader: Type.Boolean(),
      healthy: Type.Boolean(),
    }),
    role: Type.Union([Type.Literal('leader'), Type.Literal('follower'), Type.Literal('unknown')], {
      description: 'backup role of this sidecar; unknown until backup-leader election runs',
    }),
    cluster: Type.Object({
      id: Type.Optional(Type.String()),
      leader: Type.Optional(Type.Object({ id: Type.String(), name: Type.String() })),
      voters: Type.Integer(),
      healthyVoters: Type.Integer(),
      hasQuorum: Type.Boolean(),
      memberListError: Type.Optional(Type.String()),
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
    checkedAt: Type.String({ format: 'date-time' }),
    durationMs: Type.Integer(),
  }
);
export type StatusBody = Static<typeof StatusBody>;

export const HealthBody = Type.Object({ status: Type.Literal('ok') });

export const ReadyBody = Type.Object(
  {
    ready: Type.Boolean(),
    checks: Type.Array(Type.Object({ name: Type.String(), ok: Type.Boolean(), message: Type.String() })),
  }
);
export type ReadyBody = Static<typeof ReadyBody>;
