/**
 * Snapshot and defragmentation requests sent to a follower's sidecar are answered by the backup leader's: this
 * preHandler relays them there and the leader's answer back. A request carries the sender's name
 * in FORWARDED_BY, so that the receiver never forwards it again (no loops while the role changes hands).
 */
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { LeaderOnlyApi } from './deps.js';

export const FORWARDED_BY = 'x-ebs-forwarded-by';
export const FORWARDED_TO = 'x-ebs-forwarded-to';

/** A full snapshot of a large db takes minutes; the forwarded request waits as long as the leader works. */
const FORWARD_TIMEOUT_MS = { GET: 30_000, POST: 15 * 60_000 } as const;

/** Relays the request when another sidecar leads; does nothing (the route answers) otherwise. */
export function forwardToBackupLeader(api: LeaderOnlyApi, selfName: string): preHandlerAsyncHookHandler {
  return async function forward(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const target = api.forwardTo?.();
    if (!target) return;
    const forwardedBy = req.headers[FORWARDED_BY];
    if (forwardedBy !== undefined) {
      // The sender believes this sidecar leads; it does not (a handoff in progress): say so, never bounce it on.
      await reply
        .status(503)
        .send({ error: 'not_backup_leader', message: `forwarded by ${String(forwardedBy)}, but this sidecar is not the backup leader either (the role is changing hands; retry)` });
      return;
    }
    const method = req.method === 'POST' ? 'POST' : 'GET';
    const headers: Record<string, string> = { [FORWARDED_BY]: selfName };
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    let res: Response;
    try {
      res = await fetch(new URL(req.url, target.url), { method, headers, signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS[method]) });
    } catch (err) {
      await reply.status(503).send({ error: 'leader_unreachable', message: `the backup leader ${target.name} at ${target.url} did not answer: ${(err as Error).message}` });
      return;
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      await reply.status(502).send({ error: 'bad_leader_answer', message: `the backup leader ${target.name} answered ${res.status} with a body that is not JSON` });
      return;
    }
    await reply.status(res.status).header(FORWARDED_TO, target.name).send(body);
  };
}

/** Refuses a request on a sidecar that cannot serve it (it does not lead, or its snapshotter is not running). */
export function requireBackupLeader(api: LeaderOnlyApi): preHandlerAsyncHookHandler {
  return async function backupLeaderOnly(_req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const why = api.unavailable();
    if (why) await reply.status(503).send({ error: 'not_backup_leader', message: why });
  };
}
