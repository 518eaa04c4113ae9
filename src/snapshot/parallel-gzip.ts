/**
 * gzip on every core: the input is cut into blocks, each compressed in a worker thread as a gzip
 * member of its own, and the members are written in order. RFC 1952 allows a file of several
 * members and every reader we meet reads one as one stream: Go's gzip.Reader (multistream by
 * default, so gardener's restore), Node's gunzip, gzip(1). One thread does ~30 MB/s of gzip -6, less
 * than etcd streams a snapshot; this is how the default full snapshot keeps up.
 *
 * Bounded: at most `inFlight` blocks are being compressed or waiting for their turn; a write is not
 * acknowledged until there is room, so etcd's stream waits (backpressure) rather than memory
 * growing. Each member loses the 32 KiB of history its predecessor would have given it: at 1 MiB
 * blocks that costs well under 1% of the size.
 *
 * The workers belong to the stream: they end with it, however it ends (finished, failed, destroyed).
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';

export const GZIP_BLOCK_BYTES = 1024 * 1024;
/** More threads than this buy nothing but memory: etcd does not stream faster than ~4 cores compress. */
const MAX_WORKERS = 4;

// Plain CommonJS run with eval: no file to find, whether the product runs from dist/ or under tsx.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', ({ seq, data, level }) => {
  try {
    parentPort.postMessage({ seq, out: zlib.gzipSync(data, { level }) });
  } catch (err) {
    parentPort.postMessage({ seq, error: String((err && err.message) || err) });
  }
});
`;

let live = 0;
/** Worker threads alive across every stream: for tests that no stream leaks one. */
export function liveGzipWorkers(): number {
  return live;
}

export interface ParallelGzipOptions {
  level?: number;
  /** Threads; default: the cores, at most 4. */
  workers?: number;
  blockBytes?: number;
  /** Blocks compressing or waiting to be written; default: twice the workers. */
  inFlight?: number;
}

interface Reply {
  seq: number;
  out?: Uint8Array;
  error?: string;
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockBytes: number;
  private readonly inFlight: number;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  /** Blocks cut but not yet handed to a worker, in order. */
  private readonly queued: { seq: number; data: Buffer }[] = [];
  /** Compressed members that arrived ahead of their turn. */
  private readonly done = new Map<number, Buffer>();
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
    const n = Math.max(1, opts.workers ?? Math.min(MAX_WORKERS, availableParallelism()));
    this.inFlight = Math.max(1, opts.inFlight ?? 2 * n);
    for (let i = 0; i < n; i++) this.spawn();
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
    if (this.pending() === 0) this.finish(callback);
    else this.waitingFlush = callback;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.stop();
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
    while (this.idle.length > 0 && this.queued.length > 0) {
      const worker = this.idle.pop() as Worker;
      const { seq, data } = this.queued.shift() as { seq: number; data: Buffer };
      worker.postMessage({ seq, data, level: this.level });
    }
  }

  private spawn(): void {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    live++;
    worker.on('message', (reply: Reply) => {
      if (this.stopped) return;
      this.idle.push(worker);
      if (reply.error !== undefined) {
        this.destroy(new Error(`gzip: ${reply.error}`));
        return;
      }
      const out = reply.out as Uint8Array;
      this.done.set(reply.seq, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
      this.drain();
      this.dispatch();
    });
    worker.on('error', (err) => this.destroy(new Error(`gzip: worker failed: ${err.message}`, { cause: err })));
    worker.once('exit', () => {
      live--;
      if (!this.stopped) this.destroy(new Error('gzip: a worker exited while compressing'));
    });
    this.workers.push(worker);
    this.idle.push(worker);
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
      this.finish(cb);
    }
  }

  private finish(callback: TransformCallback): void {
    this.stop();
    callback();
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.queued.length = 0;
    this.done.clear();
    for (const w of this.workers) void w.terminate();
  }
}
