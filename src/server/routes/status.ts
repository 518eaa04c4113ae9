import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { summarizeBackup } from '../../snapshot/backup-state.js';
import type { ServerDeps } from '../deps.js';
import { ErrorBody, StatusBody } from '../schemas.js';

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
      const summary: StatusBody['cluster'] = { voters: cluster.voters, healthyVoters: cluster.healthyVoters, hasQuorum: cluster.hasQuorum, alarms: cluster.alarms };
      if (cluster.clusterId) summary.id = cluster.clusterId;
      if (cluster.leader) summary.leader = cluster.leader;
      if (cluster.memberListError) summary.memberListError = cluster.memberListError;
      const body: StatusBody = {
        member,
        role: 'unknown',
        cluster: summary,
        members: cluster.members,
        endpoints: deps.endpoints(),
        backup: summarizeBackup(deps.snapshots.state(), me?.status?.revision),
        checkedAt: cluster.checkedAt,
        durationMs: cluster.durationMs,
      };
      if (deps.defrag) body.defrag = deps.defrag.status();
      const store = deps.storeHealth();
      if (store) body.store = store;
      if (deps.secondaryStore) body.secondaryStore = deps.secondaryStore();
      if (deps.cluster) {
        const { role, ...election } = deps.cluster();
        body.role = role;
        body.election = election;
      }
      return body;
    },
  );
};
