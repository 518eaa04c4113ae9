import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { BackupState, ServerDeps } from '../app.js';
import type { SnapshotRecord } from '../../snapshot/record.js';
import { ErrorBody, StatusBody } from '../schemas.js';

function point(r: SnapshotRecord | undefined): { name: string; lastRevision: number; uploadedAt: string } | undefined {
  return r && { name: r.name, lastRevision: r.lastRevision, uploadedAt: new Date(Date.parse(r.createdAt) + r.durationMs).toISOString() };
}

function backupSummary(state: BackupState, memberRevision: number | undefined): StatusBody['backup'] {
  const out: StatusBody['backup'] = { takesSnapshots: state.takesSnapshots };
  if (state.problem) out.problem = state.problem;
  const full = point(state.lastFull);
  const delta = point(state.lastDelta);
  if (full) out.lastFull = full;
  if (delta) out.lastDelta = delta;
  if (state.uploadedRevision) {
    out.uploadedRevision = state.uploadedRevision;
    const etcd = Math.max(state.etcdRevision ?? 0, memberRevision ?? 0);
    if (etcd > 0) out.revisionLag = Math.max(0, etcd - state.uploadedRevision);
  }
  const last = [full, delta].filter((p) => p !== undefined).map((p) => Date.parse(p.uploadedAt));
  if (last.length > 0) out.secondsSinceLastUpload = Math.round((Date.now() - Math.max(...last)) / 100) / 10;
  return out;
}

export const statusRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  app.get(
    '/status',
    {
      schema: {
        summary: "This member, every member's health, revision and db size (like etcdctl endpoint status --cluster)",
        tags: ['status'],
        response: { 200: StatusBody, 500: ErrorBody },
      },
    },
    async (): Promise<StatusBody> => {
      const cluster = await deps.clusterStatus();
      const selfURLs = new Set(deps.self.clientURLs);
      const me = cluster.members.find((m) => m.name === deps.self.name) ?? cluster.members.find((m) => m.clientURLs.some((u) => selfURLs.has(u)));
      const member: StatusBody['member'] = {
        name: deps.self.name,
        clientURLs: deps.self.clientURLs,
        isLeader: me?.isLeader ?? false,
        healthy: me?.healthy ?? false,
      };
      if (me) {
        member.id = me.id;
        member.isLearner = me.isLearner;
      }
      const summary: StatusBody['cluster'] = { voters: cluster.voters, healthyVoters: cluster.healthyVoters, hasQuorum: cluster.hasQuorum };
      if (cluster.clusterId) summary.id = cluster.clusterId;
      if (cluster.leader) summary.leader = cluster.leader;
      if (cluster.memberListError) summary.memberListError = cluster.memberListError;
      const body: StatusBody = {
        member,
        role: 'unknown',
        cluster: summary,
        members: cluster.members,
        endpoints: deps.endpoints(),
        backup: backupSummary(deps.snapshots.state(), me?.status?.revision),
        checkedAt: cluster.checkedAt,
        durationMs: cluster.durationMs,
      };
      const store = deps.storeHealth();
      if (store) body.store = store;
      if (deps.cluster) {
        const { role, ...election } = deps.cluster();
        body.role = role;
        body.election = election;
      }
      return body;
    },
  );
};
