import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BoltScanner, type BoltFacts } from '../etcd/bolt.js';

const TRAILER = 32;

export class SnapshotIntegrityError extends Error {
  override name = 'SnapshotIntegrityError';
}

/**
 * Passes a full snapshot stream (bolt db + etcd's sha256 trailer) through unchanged while checking
 * it: the trailer must be the sha256 of the db bytes, and the db itself is read as it goes by to
 * learn the revision inside it. Ends with an error (and so fails the upload it feeds) when either
 * check fails; `facts` is set once the stream has ended cleanly.
 */
export class SnapshotVerifier extends Transform {
  private readonly hash = createHash('sha256');
  private readonly scanner = new BoltScanner();
  /** The last bytes seen, held back from the hash and the scanner until we know they are not the trailer. */
  private tail = Buffer.alloc(0);
  private total = 0;
  facts: (BoltFacts & { dbBytes: number; sha256: string }) | undefined;
  /** Size and sha256 of every byte that passed through (db and trailer), once ended: what an uncompressed upload stores. */
  streamDigest: { size: number; sha256Hex: string } | undefined;

  constructor() {
    // etcd sends 32 KiB messages; room for many keeps each stage from waiting on the next per chunk.
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.total += chunk.length;
    try {
      if (chunk.length >= TRAILER) {
        // The held-back bytes are not the trailer after all; the chunk's last 32 bytes may be.
        this.consume(this.tail);
        this.consume(chunk.subarray(0, chunk.length - TRAILER));
        this.tail = Buffer.from(chunk.subarray(chunk.length - TRAILER));
      } else {
        const joined = Buffer.concat([this.tail, chunk]);
        this.consume(joined.subarray(0, Math.max(0, joined.length - TRAILER)));
        this.tail = joined.subarray(Math.max(0, joined.length - TRAILER));
      }
    } catch (err) {
      done(new SnapshotIntegrityError(`snapshot is not a valid etcd db: ${(err as Error).message}`));
      return;
    }
    done(null, chunk);
  }

  private consume(body: Buffer): void {
    if (body.length === 0) return;
    this.hash.update(body);
    this.scanner.write(body);
  }

  override _flush(done: TransformCallback): void {
    if (this.tail.length < TRAILER) {
      done(new SnapshotIntegrityError(`snapshot stream ended after ${this.total} bytes, too short for etcd's sha256 trailer`));
      return;
    }
    // One hashing pass serves both: the db's sha256 for the trailer check, and, continued over the
    // trailer, the sha256 of the stream as stored when it is not compressed.
    const sha256 = this.hash.copy().digest();
    this.streamDigest = { size: this.total, sha256Hex: this.hash.update(this.tail).digest('hex') };
    if (!sha256.equals(this.tail)) {
      done(new SnapshotIntegrityError(`snapshot sha256 trailer ${this.tail.toString('hex')} does not match the db received (${sha256.toString('hex')}); the stream was damaged or cut`));
      return;
    }
    try {
      this.facts = { ...this.scanner.finish(), dbBytes: this.total - TRAILER, sha256: sha256.toString('hex') };
    } catch (err) {
      done(new SnapshotIntegrityError(`snapshot is not a valid etcd db: ${(err as Error).message}`));
      return;
    }
    done();
  }
}
