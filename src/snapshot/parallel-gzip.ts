/**
 * gzip on every core: the input is cut into blocks, each compressed as a gzip member of its own on
 * libuv's thread pool (node:zlib's asynchronous calls run there, several at once), and the members
 * are written in order. RFC 1952 allows a file of several members and every reader we meet reads
 * one as one stream: Go's gzip.Reader (multistream by default, so gardener's restore), Node's
 * gunzip, gzip(1). One thread does ~30 MB/s of gzip -6, less than etcd streams a snapshot.
 *
 * Threads of the pool rather than worker_threads: a worker is a V8 isolate of its own (a first
 * version with worker_threads peaked at 225 MiB against 130 MiB single-threaded, bench/snapshot.ts),
 * and the pool's threads hold nothing but the block they compress. At most `parallel` blocks are
 * compressed at once, fewer than the pool's 4 threads, so file I/O (the staged upload) still finds
 * one free.
 *
 * Bounded: at most `inFlight` blocks are being compressed or waiting for their turn; a write is not
 * acknowledged until there is room, so etcd's stream waits (backpressure) rather than memory
 * growing. Each member loses the 32 KiB of history its predecessor would have given it: at 1 MiB
 * blocks that costs well under 1% of the size. A stream that fails or is destroyed drops what is
 * in flight: nothing outlives it but a compression already running, which ends by itself.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

export const GZIP_BLOCK_BYTES = 1024 * 1024;
/** libuv's pool has 4 threads (UV_THREADPOOL_SIZE): one stays free for the file system. */
const MAX_PARALLEL = 3;

/**
 * Output room for one block: more than deflate's worst case (stored blocks: 5 bytes per 16 KiB,
 * plus the gzip header and trailer), so a block compresses in one go on its pool thread. With
 * node's default 16 KiB a block went back and forth with the main thread 20-60 times, and the
 * pool thread sat idle whenever the main thread was busy reading etcd's stream. Too little room
 * would only cost another round trip, never bytes.
 */
export function outputRoom(blockBytes: number): number {
  return blockBytes + (blockBytes >> 10) + 64;
}

let running = 0;
/** Block compressions running across every stream: for tests that a finished stream leaves none. */
export function runningGzipBlocks(): number {
  return running;
}

export interface ParallelGzipOptions {
  level?: number;
  /** Blocks compressed at once; default: the cores, at most 3. */
  parallel?: number;
  blockBytes?: number;
  /** Blocks compressing or waiting to be written; default: twice `parallel`. */
  inFlight?: number;
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockBytes: number;
  private readonly parallel: number;
  private readonly inFlight: number;
  /** Blocks cut but not yet compressing, in order. */
  private readonly queued: { seq: number; data: Buffer }[] = [];
  /** Compressed members that arrived ahead of their turn. */
  private readonly done = new Map<number, Buffer>();
  private compressing = 0;
  private parts: Buffer[] = [];
  private partBytes = 0;
  private nextSeq = 0;
  private nextOut = 0;
  /** The write waiting for room, and the flush waiting for the last member. */
  private waitingWrite: TransformCallback | undefined;
  private waitingFlush: TransformCallback | undefined;
  private stopped = false;

  constructor(opts: ParallelGzipOptions = {}) {
    super();
    this.level = opts.level ?? zlib.constants.Z_DEFAULT_COMPRESSION;
    this.blockBytes = opts.blockBytes ?? GZIP_BLOCK_BYTES;
    this.parallel = Math.max(1, opts.parallel ?? Math.min(MAX_PARALLEL, availableParallelism()));
    this.inFlight = Math.max(1, opts.inFlight ?? 2 * this.parallel);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.parts.push(chunk);
    this.partBytes += chunk.length;
    while (this.partBytes >= this.blockBytes) {
      const all = Buffer.concat(this.parts, this.partBytes);
      this.cut(all.subarray(0, this.blockBytes));
      const rest = all.subarray(this.blockBytes);
      this.parts = rest.length > 0 ? [rest] : [];
      this.partBytes = rest.length;
    }
    if (this.pending() < this.inFlight) callback();
    else this.waitingWrite = callback;
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still makes one (empty) member: a gzip file is never zero bytes.
    if (this.partBytes > 0 || this.nextSeq === 0) this.cut(Buffer.concat(this.parts, this.partBytes));
    this.parts = [];
    this.partBytes = 0;
    if (this.pending() === 0) callback();
    else this.waitingFlush = callback;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.stopped = true;
    this.queued.length = 0;
    this.done.clear();
    callback(err);
  }

  private pending(): number {
    return this.nextSeq - this.nextOut;
  }

  private cut(data: Buffer): void {
    this.queued.push({ seq: this.nextSeq++, data });
    this.dispatch();
  }

  private dispatch(): void {
    while (!this.stopped && this.compressing < this.parallel && this.queued.length > 0) {
      const { seq, data } = this.queued.shift() as { seq: number; data: Buffer };
      this.compressing++;
      running++;
      zlib.gzip(data, { level: this.level, chunkSize: outputRoom(data.length) }, (err, out) => {
        this.compressing--;
        running--;
        if (this.stopped) return;
        if (err) {
          this.destroy(new Error(`gzip: ${err.message}`, { cause: err }));
          return;
        }
        this.done.set(seq, out);
        this.drain();
        this.dispatch();
      });
    }
  }

  /** Writes the members that are next in order, then lets the waiting write or flush go on. */
  private drain(): void {
    for (let out = this.done.get(this.nextOut); out; out = this.done.get(this.nextOut)) {
      this.done.delete(this.nextOut++);
      this.push(out);
    }
    if (this.waitingWrite && this.pending() < this.inFlight) {
      const cb = this.waitingWrite;
      this.waitingWrite = undefined;
      cb();
    }
    if (this.waitingFlush && this.pending() === 0) {
      const cb = this.waitingFlush;
      this.waitingFlush = undefined;
      cb();
    }
  }
}
