import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { InitStatus } from '../../initializer/initializer.js';
import { settleWithin } from '../../resilience.js';
import type { InitializeApi, ServerDeps } from '../deps.js';
import { NoInitializerError } from '../errors.js';
import { ErrorBody, InitializeBody, InitializeQuery } from '../schemas.js';

/** Stands in when the sidecar runs without an initializer: every call is answered 503 (see errors.ts). */
const withoutInitializer: InitializeApi = {
  start: () => Promise.reject(new NoInitializerError()),
  status: () => {
    throw new NoInitializerError();
  },
  etcdConfig: () => {
    throw new NoInitializerError();
  },
};

const statusCode = (s: InitStatus): 200 | 202 | 500 => (s.state === 'Successful' ? 200 : s.state === 'Failed' ? 500 : 202);

export const initializeRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  const init = deps.initializer ?? withoutInitializer;

  app.post(
    '/initialize',
    {
      schema: {
        summary: 'Start initializing this member (a second call joins the running one)',
        description: '200 when done, 202 while still running after `wait` seconds, 500 when it failed; the body is the state either way.',
        tags: ['initialize'],
        querystring: InitializeQuery,
        response: { 200: InitializeBody, 202: InitializeBody, 500: InitializeBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      await settleWithin(init.start(), req.query.wait * 1000);
      const status = init.status();
      return reply.status(statusCode(status)).send(status);
    },
  );

  app.get('/initialize', { schema: { summary: 'The state of initialization (reading never resets it)', tags: ['initialize'], response: { 200: InitializeBody, 503: ErrorBody } } }, async () =>
    init.status(),
  );

  app.get(
    '/config',
    {
      schema: {
        summary: "etcd's config file (YAML) for this member, as initialization decided it",
        description: 'Start etcd with `--config-file` set to this. 409 until initialization succeeded.',
        tags: ['initialize'],
        produces: ['application/yaml'],
        response: { 200: { type: 'string' }, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (_req, reply) => {
      const yaml = init.etcdConfig();
      if (yaml === undefined) return reply.status(409).send({ error: 'not_initialized', message: `initialization has not succeeded (state ${init.status().state}): POST /initialize first` });
      return reply.type('application/yaml; charset=utf-8').send(yaml);
    },
  );
};
