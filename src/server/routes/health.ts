import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { alarmType } from '../../etcd/alarms.js';
import type { ServerDeps } from '../deps.js';
import { HealthBody, ReadyBody } from '../schemas.js';

export const healthRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  // Liveness says only that the process serves requests: an etcd outage must not get the sidecar
  // restarted, since it is the part that brings etcd back.
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['health'], response: { 200: HealthBody } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: the local etcd member answers and follows a leader',
        tags: ['health'],
        response: { 200: ReadyBody, 503: ReadyBody },
      },
    },
    async (_req, reply) => {
      const self = await deps.probeSelf();
      const checks: ReadyBody['checks'] = [
        {
          name: 'etcd-reachable',
          ok: self.reachable,
          message: self.reachable ? `${self.endpoint} answered in ${self.latencyMs} ms` : `${self.endpoint}: ${self.error ?? 'unreachable'}`,
        },
      ];
      if (self.reachable) {
        const hasLeader = self.leaderId !== undefined && self.leaderId !== '0';
        checks.push({ name: 'etcd-has-leader', ok: hasLeader, message: hasLeader ? `leader ${self.leaderId}` : 'the local member has no leader' });
        const alarms = self.alarms.map(alarmType);
        checks.push({
          name: 'etcd-no-alarm',
          ok: alarms.length === 0,
          message:
            alarms.length === 0 ? 'no alarm' : `alarms: ${alarms.join(', ')}${alarms.includes('NOSPACE') ? ' (writes are refused: make room and disarm, or run with --auto-recover-nospace)' : ''}`,
        });
      }
      const ready = checks.every((c) => c.ok);
      return reply.status(ready ? 200 : 503).send({ ready, checks });
    },
  );
};
