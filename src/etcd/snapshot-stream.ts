import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { Readable, Transform } from 'node:stream';
import { readFileMeta } from './bolt.js';
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

/**
 * The db file of a stopped member in the shape `Maintenance.Snapshot` sends: its pages up to the
 * high-water mark its meta page records (the file may be longer, grown ahead by bbolt), then the
 * sha256 of those bytes.
 */
export async function dbFileSnapshot(dbPath: string): Promise<Readable> {
  const fh = await open(dbPath, 'r');
  let length: number;
  try {
    const meta = await readFileMeta(fh);
    length = meta.pageCount * meta.pageSize;
  } finally {
    await fh.close();
  }
  async function* withTrailer(): AsyncGenerator<Buffer> {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(dbPath, { start: 0, end: length - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      yield chunk;
    }
    yield hash.digest();
  }
  return Readable.from(withTrailer(), { objectMode: false });
}
