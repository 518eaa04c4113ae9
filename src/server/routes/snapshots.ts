import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { restorableChain } from '../../snapshot/chain.js';
import type { SnapshotRef } from '../../snapshot/names.js';
import { SnapshotBusyError } from '../../snapshot/snapshotter.js';
import { StoreError } from '../../snapstore/types.js';
import type { ServerDeps, SnapshotApi } from '../app.js';
import { ErrorBody, LatestBody, NoDeltaBody, SnapshotListBody, SnapshotListQuery, SnapshotRecordBody } from '../schemas.js';

function refBody(s: SnapshotRef): typeof SnapshotListBody.static.snapshots[number] {
  return { name: s.name, kind: s.kind, startRevision: s.startRevision, lastRevision: s.lastRevision, createdAt: s.createdAt.toISOString(), compression: s.compression, final: s.final };
}

/** Newest first: by last revision, then name; the page token is the sort key of the last item sent. */
function newestFirst(a: SnapshotRef, b: SnapshotRef): number {
  return b.lastRevision - a.lastRevision || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);
}

function encodeToken(s: SnapshotRef): string {
  return Buffer.from(JSON.stringify([s.lastRevision, s.name])).toString('base64url');
}

function decodeToken(token: string): { lastRevision: number; name: string } | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === 'string') return { lastRevision: v[0] as number, name: v[1] };
  } catch {
    // fall through: a token we did not make
  }
  return undefined;
}

function snapshotFailure(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof SnapshotBusyError) return reply.status(409).send({ error: 'snapshot_running', message: err.message });
  if (err instanceof StoreError) return reply.status(502).send({ error: 'store_failed', message: err.message });
  return reply.status(500).send({ error: 'snapshot_failed', message: (err as Error).message });
}

/** Set on a request a follower forwards, so that the receiver never forwards it again (no loops). */
export const FORWARDED_BY = 'x-ebs-forwarded-by';
/** A full snapshot of a large db takes minutes; the forwarded request waits as long as the leader works. */
const FORWARD_TIMEOUT_MS = { GET: 30_000, POST: 15 * 60_000 } as const;

/**
 * Sends the request to the backup leader's sidecar and relays its answer, or answers 503 when the
 * leader does not answer. Returns false when the request must be answered here. (A boolean, not
 * the reply: an awaited fastify reply resolves to undefined, and the request would run here too.)
 */
async function forwardToLeader(api: SnapshotApi, self: string, req: FastifyRequest, reply: FastifyReply): Promise<boolean> {
  const target = api.forwardTo?.();
  if (!target) return false;
  const forwardedBy = req.headers[FORWARDED_BY];
  if (forwardedBy !== undefined) {
    // The sender believes this sidecar leads; it does not (a handoff in progress): say so, never bounce it on.
    reply.status(503).send({ error: 'not_backup_leader', message: `forwarded by ${String(forwardedBy)}, but this sidecar is not the backup leader either (the role is changing hands; retry)` });
    return true;
  }
  const method = req.method === 'POST' ? 'POST' : 'GET';
  const headers: Record<string, string> = { [FORWARDED_BY]: self };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  let res: Response;
  try {
    res = await fetch(new URL(req.url, target.url), { method, headers, signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS[method]) });
  } catch (err) {
    reply.status(503).send({ error: 'leader_unreachable', message: `the backup leader ${target.name} at ${target.url} did not answer: ${(err as Error).message}` });
    return true;
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    reply.status(502).send({ error: 'bad_leader_answer', message: `the backup leader ${target.name} answered ${res.status} with a body that is not JSON` });
    return true;
  }
  reply.status(res.status).header('x-ebs-forwarded-to', target.name).send(body);
  return true;
}

export const snapshotRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  const api = deps.snapshots;
  const errors = { 409: ErrorBody, 500: ErrorBody, 502: ErrorBody, 503: ErrorBody };

  app.post(
    '/snapshot/full',
    { schema: { summary: 'Take a full snapshot now', tags: ['snapshots'], response: { 201: SnapshotRecordBody, ...errors } } },
    async (req, reply) => {
      if (await forwardToLeader(api, deps.self.name, req, reply)) return reply;
      const why = api.unavailable();
      if (why) return reply.status(503).send({ error: 'not_backup_leader', message: why });
      try {
        return reply.status(201).send(await api.takeFull());
      } catch (err) {
        return snapshotFailure(reply, err);
      }
    },
  );

  app.post(
    '/snapshot/delta',
    {
      schema: {
        summary: 'Upload the events collected since the last delta now',
        description: '201 with the delta uploaded; 200 when there was no new event to upload.',
        tags: ['snapshots'],
        response: { 200: NoDeltaBody, 201: SnapshotRecordBody, ...errors },
      },
    },
    async (req, reply) => {
      if (await forwardToLeader(api, deps.self.name, req, reply)) return reply;
      const why = api.unavailable();
      if (why) return reply.status(503).send({ error: 'not_backup_leader', message: why });
      if (!api.deltasEnabled) return reply.status(409).send({ error: 'deltas_disabled', message: 'delta snapshots are disabled (--delta-snapshot-period=0)' });
      try {
        const record = await api.takeDelta();
        if (!record) return reply.status(200).send({ uploaded: false as const, message: 'no new events since the last snapshot' });
        return reply.status(201).send(record);
      } catch (err) {
        return snapshotFailure(reply, err);
      }
    },
  );

  app.get(
    '/snapshot/latest',
    {
      schema: {
        summary: 'The latest full snapshot and the deltas after it: what a restore would use',
        description: "On a follower, forwarded to the backup leader's sidecar; answered from the store here when no leader is known.",
        tags: ['snapshots'],
        response: { 200: LatestBody, 502: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      if (await forwardToLeader(api, deps.self.name, req, reply)) return reply;
      let listing: SnapshotRef[];
      try {
        listing = await api.list();
      } catch (err) {
        return snapshotFailure(reply, err);
      }
      const chain = restorableChain(listing);
      const body: LatestBody = {
        full: chain.full ? refBody(chain.full) : null,
        deltas: chain.links.map((l) => ({ snapshot: refBody(l.delta), skipThrough: l.skipThrough })),
        lastRevision: chain.lastRevision,
        contiguous: chain.contiguous,
        gaps: chain.gaps,
        strandedDeltas: chain.stranded.length,
      };
      return body;
    },
  );

  app.get(
    '/snapshots',
    { schema: { summary: 'Every snapshot in the store, newest first, paginated', tags: ['snapshots'], querystring: SnapshotListQuery, response: { 200: SnapshotListBody, 400: ErrorBody, 502: ErrorBody } } },
    async (req, reply) => {
      const after = req.query.pageToken === undefined ? undefined : decodeToken(req.query.pageToken);
      if (req.query.pageToken !== undefined && !after) return reply.status(400).send({ error: 'bad_request', message: 'pageToken: not a token this API returned' });
      let listing: SnapshotRef[];
      try {
        listing = await api.list();
      } catch (err) {
        return snapshotFailure(reply, err);
      }
      const sorted = listing.sort(newestFirst);
      const rest = after ? sorted.filter((s) => s.lastRevision < after.lastRevision || (s.lastRevision === after.lastRevision && s.name < after.name)) : sorted;
      const page = rest.slice(0, req.query.limit);
      const body: typeof SnapshotListBody.static = { snapshots: page.map(refBody) };
      const last = page[page.length - 1];
      if (rest.length > page.length && last) body.nextPageToken = encodeToken(last);
      return body;
    },
  );
};
