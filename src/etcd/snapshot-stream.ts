import type { Metadata } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { Transform, type Readable } from 'node:stream';
import { forgetAuthToken } from './client.js';

/** The part of etcd3 1.1.2's connection pool used here (not public API; the version is pinned). */
interface PoolInternals {
  withConnection<T>(service: 'Maintenance', fn: (conn: { client: MaintenanceService; metadata: Metadata }) => T | Promise<T>): Promise<T>;
}

interface MaintenanceService {
  snapshot(request: object, metadata: Metadata, options: object): Readable;
}

interface SnapshotResponse {
  blob: Buffer;
}

/**
 * The `Maintenance.Snapshot` stream of one member, as bytes: the member's bolt db followed by etcd's
 * 32-byte sha256 trailer. Called through etcd3's pool because its own `maintenance.snapshot()` passes
 * the auth metadata in the request's place, so a cluster with auth enabled refuses it.
 * Backpressure holds end to end: grpc stops reading from the member while the consumer is slow.
 */
export async function openSnapshotStream(member: Etcd3): Promise<Readable> {
  forgetAuthToken(member);
  const pool = (member as unknown as { pool: PoolInternals }).pool;
  const responses = await pool.withConnection('Maintenance', ({ client, metadata }) => client.snapshot({}, metadata, {}));
  const bytes = new Transform({
    writableObjectMode: true,
    readableHighWaterMark: 1 << 20,
    transform(res: SnapshotResponse, _enc, done) {
      done(null, res.blob);
    },
  });
  responses.on('error', (err) => bytes.destroy(err));
  // A consumer that gives up (trailer mismatch, failed upload) ends the call on the member too.
  bytes.on('close', () => (responses as Readable & { cancel?: () => void }).cancel?.());
  return responses.pipe(bytes);
}
