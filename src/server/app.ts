import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from '../logger.js';
import type { ServerDeps } from './deps.js';
import { bodyDeadline, errorHandler, notFoundHandler, clientErrorHandler, refuseNonFiniteNumbers } from './errors.js';
import { authPlugin } from './auth.js';
import type { ServerTls } from './tls.js';
import { defragRoutes } from './routes/defrag.js';
import { healthRoutes } from './routes/health.js';
import { initializeRoutes } from './routes/initialize.js';
import { metricsRoutes } from './routes/metrics.js';
import { openapiRoutes } from './routes/openapi.js';
import { snapshotRoutes } from './routes/snapshots.js';
import { statusRoutes } from './routes/status.js';

export interface ServerOptions {
  bodyLimit: number;
  logger: Logger;
  /** Mutating requests must send it as a bearer token; undefined: not checked. */
  apiToken?: string;
  /** Serve HTTPS (and with a client CA, mutual TLS). */
  https?: ServerTls;
  /** Removes secret values from every response body (errors may quote what a library said). */
  scrub?: (text: string) => string;
  /** Time allowed to receive a whole request; 0 disables the limit. */
  requestTimeoutMs?: number;
}

/** How often Node looks for requests past their deadline; its default (30 s) would let one overstay by that much. */
const TIMEOUT_CHECK_MS = 1_000;

export type App = FastifyInstance;
export type { BackupState, InitializeApi, ServerDeps, SnapshotApi } from './deps.js';

const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

export async function buildServer(deps: ServerDeps, opts: ServerOptions): Promise<App> {
  const app = Fastify({
    // HTTPS when configured. Fastify types an HTTPS instance differently, but routes and hooks are the
    // same, so App stays one type.
    ...(opts.https ? { https: { ...opts.https, connectionsCheckingInterval: TIMEOUT_CHECK_MS } } : { http: { connectionsCheckingInterval: TIMEOUT_CHECK_MS } }),
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    clientErrorHandler,
    // pino's Logger and fastify's base logger type differ only in generics (tsc needs the cast; the instance is pino).
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: opts.logger as FastifyInstance['log'],
    bodyLimit: opts.bodyLimit,
    // Probes and scrapes arrive every few seconds; logging them would drown what operators did.
    logController: new LogController({ disableRequestLogging: (req) => PROBE_ROUTES.has(req.url.split('?')[0] ?? '') }),
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'etcd-backup-sidecar',
        description: 'Control API of the etcd backup sidecar: initialization, snapshots, status, health and metrics.',
        version: '1',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'required on mutating routes when --api-token-file (or EBS_API_TOKEN) is set; always set it when --listen is not loopback' },
        },
      },
    },
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  await app.register(authPlugin, { token: opts.apiToken });
  app.addHook('preHandler', refuseNonFiniteNumbers);
  app.addHook('onRequest', bodyDeadline(opts.requestTimeoutMs ?? 30_000));
  const scrub = opts.scrub;
  if (scrub) app.addHook('onSend', async (_req, _reply, payload) => (typeof payload === 'string' ? scrub(payload) : payload));

  await app.register(healthRoutes, { deps });
  await app.register(statusRoutes, { deps });
  await app.register(metricsRoutes, { deps });
  await app.register(snapshotRoutes, { deps });
  await app.register(defragRoutes, { deps });
  await app.register(initializeRoutes, { deps });
  await app.register(openapiRoutes);
  await app.ready();
  return app;
}
