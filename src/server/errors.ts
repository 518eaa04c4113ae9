import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

/** Every error leaves as {"error": code, "message": text} with a fitting status (DESIGN section 5). */
export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.validation) {
    void reply.status(400).send({ error: 'bad_request', message: err.message });
    return;
  }
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status >= 500) req.log.error({ err }, 'request failed');
  const code = status === 413 ? 'body_too_large' : status === 415 ? 'unsupported_media_type' : status >= 500 ? 'internal' : 'bad_request';
  void reply.status(status).send({ error: code, message: err.message });
}

export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  void reply.status(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
}
