import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { restorableChain } from '../../snapshot/chain.js';
import type { SnapshotRef } from '../../snapshot/names.js';
import { SnapshotBusyError } from '../../snapshot/snapshotter.js';
import { StoreError } from '../../snapstore/types.js';
import type { ServerDeps } from '../app.js';
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

export const snapshotRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  const api = deps.snapshots;
  const errors = { 409: ErrorBody, 500: ErrorBody, 502: ErrorBody, 503: ErrorBody };

  app.post(
    '/snapshot/full',
    { schema: { summary: 'Take a full snapshot now', tags: ['snapshots'], response: { 201: SnapshotRecordBody, ...errors } } },
    async (_req, reply) => {
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
    async (_req, reply) => {
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
    { schema: { summary: 'The latest full snapshot and the deltas after it: what a restore would use', tags: ['snapshots'], response: { 200: LatestBody, 502: ErrorBody } } },
    async (_req, reply) => {
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
