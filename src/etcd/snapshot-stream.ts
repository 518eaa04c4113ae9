import type { Etcd3 } from 'etcd3';
import { Transform, type Readable } from 'node:stream';
import { forgetAuthToken } from './client.js';
import { openMaintenanceSnapshot } from './etcd3-internals.js';

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
  const responses = await openMaintenanceSnapshot(member);
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
