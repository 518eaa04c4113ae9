import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { restorableChain } from '../../snapshot/chain.js';
import { decodePageToken, snapshotPage } from '../../snapshot/listing.js';
import type { SnapshotRef } from '../../snapshot/names.js';
import type { ServerDeps } from '../deps.js';
import { forwardToBackupLeader, requireBackupLeader } from '../forward.js';
import { ErrorBody, LatestBody, NoDeltaBody, SnapshotListBody, SnapshotListQuery, SnapshotRecordBody } from '../schemas.js';

function refBody(s: SnapshotRef): (typeof SnapshotListBody.static)['snapshots'][number] {
  return { name: s.name, kind: s.kind, startRevision: s.startRevision, lastRevision: s.lastRevision, createdAt: s.createdAt.toISOString(), compression: s.compression, final: s.final };
}

export const snapshotRoutes: FastifyPluginAsyncTypebox<{ deps: ServerDeps }> = async (app, { deps }) => {
  const api = deps.snapshots;
  const errors = { 409: ErrorBody, 500: ErrorBody, 502: ErrorBody, 503: ErrorBody };
  const forward = forwardToBackupLeader(api, deps.self.name);
  const onLeader = [forward, requireBackupLeader(api)];
  const config = { failureCode: 'snapshot_failed' };

  app.post(
    '/snapshot/full',
    {
      schema: {
        summary: 'Take a full snapshot now',
        description:
          'Answers 201 with a full snapshot that started after the request arrived: while one runs, the request waits for it and gets the next one, which every request that arrived meanwhile shares.',
        tags: ['snapshots'],
        response: { 201: SnapshotRecordBody, ...errors },
      },
      preHandler: onLeader,
      config,
    },
    async (_req, reply) => reply.status(201).send(await api.takeFull()),
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
      preHandler: onLeader,
      config,
    },
    async (_req, reply) => {
      if (!api.deltasEnabled) return reply.status(409).send({ error: 'deltas_disabled', message: 'delta snapshots are disabled (--delta-snapshot-period=0)' });
      const record = await api.takeDelta();
      if (!record) return reply.status(200).send({ uploaded: false as const, message: 'no new events since the last snapshot' });
      return reply.status(201).send(record);
    },
  );

  app.post(
    '/snapshot/compact',
    {
      schema: {
        summary: 'Compact the latest chain into a full snapshot at its last revision',
        description:
          "The latest full snapshot and its deltas are restored into a scratch temporary etcd, snapshotted there and uploaded as a full snapshot at the chain's last revision, with the chain's cluster ID: a later restore starts from it and replays nothing, and retention collects the old deltas. 201 with the new snapshot; 409 nothing_to_compact when the chain has no delta (or no full snapshot, or a gap), 409 compact_running while one runs. Takes as long as a restore of the chain.",
        tags: ['snapshots'],
        response: { 201: SnapshotRecordBody, ...errors },
      },
      preHandler: onLeader,
      config: { failureCode: 'compact_failed' },
    },
    async (_req, reply) => reply.status(201).send(await api.compact()),
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
      preHandler: forward,
      config,
    },
    async (): Promise<LatestBody> => {
      const chain = restorableChain(await api.list());
      return {
        full: chain.full ? refBody(chain.full) : null,
        deltas: chain.links.map((l) => ({ snapshot: refBody(l.delta), skipThrough: l.skipThrough })),
        lastRevision: chain.lastRevision,
        contiguous: chain.contiguous,
        gaps: chain.gaps,
        strandedDeltas: chain.stranded.length,
      };
    },
  );

  app.get(
    '/snapshots',
    {
      schema: {
        summary: 'Every snapshot in the store, newest first, paginated',
        tags: ['snapshots'],
        querystring: SnapshotListQuery,
        response: { 200: SnapshotListBody, 400: ErrorBody, 502: ErrorBody },
      },
      config,
    },
    async (req, reply) => {
      const after = req.query.pageToken === undefined ? undefined : decodePageToken(req.query.pageToken);
      if (req.query.pageToken !== undefined && !after) return reply.status(400).send({ error: 'bad_request', message: 'pageToken: not a token this API returned' });
      const page = snapshotPage(await api.list(), req.query.limit, after);
      const body: typeof SnapshotListBody.static = { snapshots: page.snapshots.map(refBody) };
      if (page.nextPageToken) body.nextPageToken = page.nextPageToken;
      return body;
    },
  );
};
