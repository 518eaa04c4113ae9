import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DefragBusyError, DefragRefusedError } from '../defrag/defragmenter.js';
import { CompactBusyError, CompactRefusedError } from '../restore/compact.js';
import { SnapshotBusyError } from '../snapshot/snapshotter.js';
import { StoreError } from '../snapstore/types.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The error code of an unexpected failure of this route (default `internal`). */
    failureCode?: string;
  }
}

/** A route of the initializer on a sidecar that runs without one. */
export class NoInitializerError extends Error {
  override name = 'NoInitializerError';
  constructor() {
    super('this sidecar runs without an initializer');
  }
}

/** The sidecar's own errors the API answers with their own status and code, whatever the route. */
const DOMAIN_ERRORS: readonly { type: abstract new (...args: never[]) => Error; status: number; code: string }[] = [
  { type: SnapshotBusyError, status: 409, code: 'snapshot_running' },
  { type: CompactBusyError, status: 409, code: 'compact_running' },
  { type: CompactRefusedError, status: 409, code: 'nothing_to_compact' },
  { type: StoreError, status: 502, code: 'store_failed' },
  { type: NoInitializerError, status: 503, code: 'no_initializer' },
  { type: DefragBusyError, status: 409, code: 'defrag_running' },
  { type: DefragRefusedError, status: 409, code: 'defrag_refused' },
];

function httpCode(status: number): string {
  return status === 413 ? 'body_too_large' : status === 415 ? 'unsupported_media_type' : status === 404 ? 'not_found' : status === 408 ? 'request_timeout' : 'bad_request';
}

/**
 * Every error leaves as {"error": code, "message": text} with a fitting status: validation 400,
 * the sidecar's own errors as registered above, HTTP errors by their status, anything else 500
 * with the route's `failureCode`. Routes throw; they never build an error answer themselves.
 */
export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.validation) {
    void reply.status(400).send({ error: 'bad_request', message: err.message });
    return;
  }
  const known = DOMAIN_ERRORS.find((d) => err instanceof d.type);
  const status = known?.status ?? (err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500);
  if (status >= 500) req.log.error({ err }, 'request failed');
  const code = known?.code ?? (status >= 500 ? (req.routeOptions.config.failureCode ?? 'internal') : httpCode(status));
  void reply.status(status).send({ error: code, message: err.message });
}

export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  void reply.status(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
}

/**
 * Requests Node's HTTP parser rejects before fastify sees them (unknown methods, malformed or
 * oversized headers, timeouts) still get the API's error shape, then the connection is closed.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'request headers exceed the size limit']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request was not received in time']
        : [400, 'bad_request', `malformed HTTP request (${err.code ?? 'parse error'})`];
  const body = JSON.stringify({ error: code, message });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * ajv coerces a query value like `1e999` (or 400 digits) to Infinity and then skips `minimum` and
 * `maximum` for non-finite numbers, so `?limit=1e999` passes the schema (found by the API fuzz
 * test). Validated query and path values are checked here, for every route.
 */
export async function refuseNonFiniteNumbers(req: FastifyRequest, reply: FastifyReply): Promise<void> {
  for (const [where, values] of [
    ['querystring', req.query],
    ['params', req.params],
  ] as const) {
    if (values === null || typeof values !== 'object') continue;
    for (const [key, value] of Object.entries(values as Record<string, unknown>)) {
      const list = Array.isArray(value) ? (value as unknown[]) : [value];
      if (list.some((v) => typeof v === 'number' && !Number.isFinite(v))) {
        await reply.status(400).send({ error: 'bad_request', message: `${where}/${key} must be a finite number` });
        return;
      }
      // Coercion also reads a blank value as 0 (`?wait=%20` would start work meant to be asked for).
      if (where === 'querystring' && list.some((v) => typeof v === 'number') && new URLSearchParams(req.url.split('?')[1] ?? '').getAll(key).some((v) => v.trim() === '')) {
        await reply.status(400).send({ error: 'bad_request', message: `${where}/${key} must be a number, not blank` });
        return;
      }
    }
  }
}

/**
 * Node's requestTimeout covers a request's headers but not, once the handler has it, a body that
 * never finishes arriving (measured on Node 20): a client could hold a connection and a parser
 * forever. This gives the body the same deadline; the body reader turns the error into a 408.
 */
export function bodyDeadline(timeoutMs: number): (req: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (req, reply) => {
    const raw = req.raw;
    const hasBody = raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0;
    if (timeoutMs <= 0 || !hasBody || raw.complete) return;
    const timer = setTimeout(() => {
      if (raw.complete || raw.destroyed) return;
      void reply.header('connection', 'close');
      const err = Object.assign(new Error(`the request body did not arrive within ${timeoutMs} ms`), { statusCode: 408 });
      // Only the body reader listens for errors on the request; without one, closing is all there is to do.
      if (raw.listenerCount('error') > 0) raw.emit('error', err);
      else raw.socket.destroy();
    }, timeoutMs);
    timer.unref();
    const clear = (): void => clearTimeout(timer);
    raw.once('end', clear);
    raw.once('close', clear);
  };
}
