import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ErrorBody } from './schemas.js';

/** Methods that only read. Everything else mutates and needs the token. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface AuthOptions {
  /** The bearer token mutating requests must present; undefined: no check. */
  token: string | undefined;
}

/** Compares in time independent of where the strings differ; hashing first makes the lengths equal. */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or why there is none. */
export function bearerToken(header: string | undefined): { token: string } | { problem: string } {
  if (header === undefined || header === '') return { problem: 'this request changes state and needs "Authorization: Bearer <token>"' };
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m) return { problem: 'the Authorization header is not "Bearer <token>"' };
  return { token: m[1] as string };
}

function deny(reply: FastifyReply, message: string, invalid: boolean): FastifyReply {
  // RFC 6750: tell the client which scheme, and whether the token it sent was the problem.
  return reply
    .status(401)
    .header('WWW-Authenticate', invalid ? 'Bearer realm="etcd-backup-sidecar", error="invalid_token"' : 'Bearer realm="etcd-backup-sidecar"')
    .send({ error: 'unauthorized', message });
}

/**
 * Bearer-token check for every mutating request. Registered without encapsulation, so it covers
 * routes registered later by any plugin: a new POST route is protected without opting in. The same
 * hook documents the requirement in the OpenAPI spec (security + 401) of each such route.
 */
const auth: FastifyPluginAsync<AuthOptions> = async (app, opts) => {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.every((m) => READ_METHODS.has(m))) return;
    const schema = (route.schema ??= {}) as { security?: unknown; response?: Record<string, unknown>; hide?: boolean };
    schema.security = [{ bearerAuth: [] }];
    schema.response = { ...(schema.response ?? {}), 401: ErrorBody };
  });

  const token = opts.token;
  if (token === undefined) return;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (READ_METHODS.has(req.method)) return;
    const presented = bearerToken(req.headers.authorization);
    if ('problem' in presented) return deny(reply, presented.problem, false);
    if (!tokenMatches(presented.token, token)) return deny(reply, 'the bearer token does not match', true);
    return undefined;
  });
};

export const authPlugin = fp(auth, { name: 'ebs-auth', fastify: '5.x' });
