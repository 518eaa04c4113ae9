import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export interface DigestResult {
  size: number;
  sha256Hex: string;
  /** Only when asked for: md5 costs more than sha256 (376 vs 936 MB/s here) and only S3 and GCS report it. */
  md5Hex?: string;
  /** The ETag S3 gives a multipart upload of these bytes in parts of `partSize`: md5 of the part md5s, `-N`. */
  multipartEtag?: string;
}

/**
 * Passes bytes through unchanged while hashing them, so a put can compare what it sent with what
 * the store reports, and a get can check what it read, without a second pass over the data.
 */
export class DigestStream extends Transform {
  // Not named `size`: lib-storage reads a body's `size` as its length (as for a Blob).
  private bytes = 0;
  private readonly sha256 = createHash('sha256');
  private readonly md5: Hash | undefined;
  private readonly partSize: number | undefined;
  private readonly onEnd: ((digest: DigestResult) => Error | undefined) | undefined;
  private readonly partMd5s: Buffer[] = [];
  private part: Hash | undefined;
  private partFill = 0;

  constructor(opts: { md5?: boolean; partSize?: number; onEnd?: (digest: DigestResult) => Error | undefined } = {}) {
    // Deep enough for a few network chunks, so hashing never makes the stages around it take turns.
    super({ highWaterMark: 1 << 20 });
    this.md5 = opts.md5 || opts.partSize ? createHash('md5') : undefined;
    this.partSize = opts.partSize;
    this.onEnd = opts.onEnd;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.sha256.update(chunk);
    this.md5?.update(chunk);
    if (this.partSize) this.hashParts(chunk, this.partSize);
    done(null, chunk);
  }

  private hashParts(chunk: Buffer, partSize: number): void {
    let offset = 0;
    while (offset < chunk.length) {
      this.part ??= createHash('md5');
      const take = Math.min(partSize - this.partFill, chunk.length - offset);
      this.part.update(chunk.subarray(offset, offset + take));
      this.partFill += take;
      offset += take;
      if (this.partFill === partSize) {
        this.partMd5s.push(this.part.digest());
        this.part = undefined;
        this.partFill = 0;
      }
    }
  }

  override _flush(done: TransformCallback): void {
    this.finalResult = this.compute();
    done(this.onEnd?.(this.finalResult) ?? null);
  }

  private finalResult: DigestResult | undefined;

  /** Available once the stream has ended. */
  get result(): DigestResult {
    if (!this.finalResult) throw new Error('digest read before the stream ended');
    return this.finalResult;
  }

  private compute(): DigestResult {
    const result: DigestResult = { size: this.bytes, sha256Hex: this.sha256.digest('hex') };
    if (this.md5) result.md5Hex = this.md5.digest('hex');
    if (this.partSize) {
      const parts = [...this.partMd5s];
      if (this.part) parts.push(this.part.digest());
      if (parts.length > 0) result.multipartEtag = `${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}`;
    }
    return result;
  }
}
