import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ServerDeps } from '../deps.js';
import { forwardToBackupLeader, requireBackupLeader } from '../forward.js';
import { DefragQuery, DefragReportBody, ErrorBody } from '../schemas.js';

export const defragRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  const api = deps.defrag;
  if (!api) return;
  app.post(
    '/defrag',
    {
      schema: {
        summary: 'Run a defragmentation round now (every member over --defrag-threshold, or ?member=)',
        description:
          'Followers one at a time, the raft leader last, each waited for until healthy again; only while every member is healthy and the quorum survives one busy member (409 defrag_refused otherwise, 409 defrag_running while a round runs). On a follower, forwarded to the backup leader. A full snapshot follows a round that defragmented a member.',
        tags: ['maintenance'],
        querystring: DefragQuery,
        response: { 200: DefragReportBody, 409: ErrorBody, 500: ErrorBody, 502: ErrorBody, 503: ErrorBody },
      },
      preHandler: [forwardToBackupLeader(api, deps.self.name), requireBackupLeader(api)],
      config: { failureCode: 'defrag_failed' },
    },
    async (req) => api.run(req.query.member),
  );
};
