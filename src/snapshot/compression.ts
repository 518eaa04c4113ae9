/**
 * The anchor's compression policies, byte-compatible in both directions: gzip and zlib through
 * node:zlib (any conforming stream reads back; the bytes need not match Go's), and LZW written
 * exactly as Go's `compress/lzw` with LSB order and 8-bit literals, which is what the anchor's
 * `.Z` objects are (a `.Z` here is not Unix compress(1): there is no header and codes restart at 9
 * bits after each clear).
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { compressionSuffix, type Compression } from './names.js';
import { ParallelGzip } from './parallel-gzip.js';

export type { Compression } from './names.js';
export { compressionSuffix } from './names.js';

export const COMPRESSIONS: readonly Compression[] = ['gzip', 'zlib', 'lzw', 'none'];

export function compressionFromSuffix(suffix: string): Compression | undefined {
  return COMPRESSIONS.find((c) => compressionSuffix(c) === suffix);
}

/** gzip/zlib level; lzw and none have none. */
export function zlibLevel(level: number | undefined): number {
  if (level === undefined) return zlib.constants.Z_DEFAULT_COMPRESSION;
  if (!Number.isInteger(level) || level < -1 || level > 9) throw new RangeError(`compression level ${level} is not an integer from -1 (default) to 9`);
  return level;
}

/**
 * A compressing stream for large objects: gzip on every core (parallel-gzip.ts, a multi-member
 * file); the others as `compressStream`. zlib (RFC 1950) cannot be cut the same way: it is one
 * deflate stream under one header and one Adler-32, and a second zlib stream after the first is
 * not read by Go's zlib.NewReader nor by node:zlib's inflate, which both stop at the first. (pigz
 * parallelises zlib with raw deflate blocks ended by sync flushes and combined Adler-32s: not done.)
 */
export function compressLargeStream(c: Compression, level?: number): Transform {
  return c === 'gzip' ? new ParallelGzip({ level: zlibLevel(level) }) : compressStream(c, level);
}

export function compressStream(c: Compression, level?: number): Transform {
  switch (c) {
    case 'gzip':
      return labelErrors(zlib.createGzip({ level: zlibLevel(level) }), 'gzip');
    case 'zlib':
      return labelErrors(zlib.createDeflate({ level: zlibLevel(level) }), 'zlib');
    case 'lzw':
      return new LzwCompressStream();
    case 'none':
      return new PassThrough();
  }
}

export function decompressStream(c: Compression): Transform {
  switch (c) {
    case 'gzip':
      return labelErrors(zlib.createGunzip(), 'gzip');
    case 'zlib':
      return labelErrors(zlib.createInflate(), 'zlib');
    case 'lzw':
      return new LzwDecompressStream();
    case 'none':
      return new PassThrough();
  }
}

/** node:zlib says "incorrect header check" without naming the format; callers log this message. */
function labelErrors<T extends Transform>(stream: T, name: string): T {
  // Prepended so the message is fixed before pipeline() or any other listener sees the error.
  stream.prependListener('error', (err: Error) => {
    if (!err.message.startsWith(`${name}: `)) err.message = `${name}: ${err.message}`;
  });
  return stream;
}

function labelled(name: string, err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  if (!e.message.startsWith(`${name}: `)) e.message = `${name}: ${e.message}`;
  return e;
}

/** LZW works synchronously: slices this big keep the event loop responsive between them. */
const LZW_SLICE = 256 * 1024;

export async function compressBuffer(c: Compression, buf: Buffer, level?: number): Promise<Buffer> {
  switch (c) {
    case 'gzip':
      return await new Promise((resolve, reject) => zlib.gzip(buf, { level: zlibLevel(level) }, (err, out) => (err ? reject(labelled('gzip', err)) : resolve(out))));
    case 'zlib':
      return await new Promise((resolve, reject) => zlib.deflate(buf, { level: zlibLevel(level) }, (err, out) => (err ? reject(labelled('zlib', err)) : resolve(out))));
    case 'lzw': {
      const enc = new LzwEncoder();
      const out: Buffer[] = [];
      for (let i = 0; i < buf.length; i += LZW_SLICE) {
        if (i > 0) await yieldToLoop();
        out.push(enc.write(buf.subarray(i, i + LZW_SLICE)));
      }
      out.push(enc.end());
      return Buffer.concat(out);
    }
    case 'none':
      return buf;
  }
}

export async function decompressBuffer(c: Compression, buf: Buffer): Promise<Buffer> {
  switch (c) {
    case 'gzip':
      return await new Promise((resolve, reject) => zlib.gunzip(buf, (err, out) => (err ? reject(labelled('gzip', err)) : resolve(out))));
    case 'zlib':
      return await new Promise((resolve, reject) => zlib.inflate(buf, (err, out) => (err ? reject(labelled('zlib', err)) : resolve(out))));
    case 'lzw': {
      const dec = new LzwDecoder();
      const out: Buffer[] = [];
      let pos = 0;
      let sinceYield = 0;
      while (pos < buf.length && !dec.done) {
        const step = dec.write(buf, pos);
        pos = step.pos;
        out.push(step.out);
        sinceYield += step.out.length;
        if (sinceYield >= LZW_SLICE) {
          sinceYield = 0;
          await yieldToLoop();
        }
      }
      dec.end();
      return Buffer.concat(out);
    }
    case 'none':
      return buf;
  }
}

// LZW as Go's compress/lzw (GIF flavour, LSB first, 8-bit literals).
const CLEAR = 256;
const EOF = 257;
const FIRST_WIDTH = 9;
const MAX_WIDTH = 12;
/** The writer clears its table rather than assign this code; the reader can still define it. */
const MAX_CODE = (1 << MAX_WIDTH) - 1;

export class LzwError extends Error {
  override name = 'LzwError';
}

/** Open-addressed dictionary slots: 4x the codes it can hold, so probes stay short. */
const SLOTS = 4 << MAX_WIDTH;

/**
 * Encoder state across writes. The dictionary maps (prefix code, next byte) to a code; each slot
 * holds the 20-bit pair and the 12-bit code in one uint32 (0 = empty: a pair never maps to code
 * 0). 64 KB keeps it in cache, which measured faster than a table indexed by the pair itself.
 */
export class LzwEncoder {
  private readonly table = new Uint32Array(SLOTS);
  /** The code for the bytes matched so far; -1 before the first byte. */
  private code = -1;
  private hi = EOF;
  private overflow = 1 << FIRST_WIDTH;
  private width = FIRST_WIDTH;
  // Go's writer always starts with a clear code, even for empty input: begin with it pending.
  private bits = CLEAR;
  private nBits = FIRST_WIDTH;
  private ended = false;

  /** The output this input completes (a code is emitted only once the byte after it is seen). */
  write(input: Uint8Array): Buffer {
    if (this.ended) throw new LzwError('lzw: write after end');
    const n = input.length;
    // At most one 12-bit code per byte, plus a clear code per table generation (> 3000 codes).
    const out = Buffer.allocUnsafe(Math.ceil(n * 1.5) + 2 * Math.ceil(n / 3000) + 8);
    if (n === 0) return out.subarray(0, 0);
    const table = this.table;
    // Module constants as locals: V8 checks a module binding is initialised on every read of it.
    const slotMask = SLOTS - 1;
    const maxCode = MAX_CODE;
    const codeShift = MAX_WIDTH;
    const clear = CLEAR;
    const eof = EOF;
    const firstWidth = FIRST_WIDTH;
    let { code, hi, overflow, width, bits, nBits } = this;
    let o = 0;
    let i = 0;
    if (code < 0) code = input[i++] as number;
    next: for (; i < n; i++) {
      const b = input[i] as number;
      const pair = (code << 8) | b;
      let slot = (pair ^ (pair >>> 12)) & slotMask;
      for (let entry = table[slot] as number; entry !== 0; entry = table[slot] as number) {
        if (entry >>> codeShift === pair) {
          code = entry & maxCode;
          continue next;
        }
        slot = (slot + 1) & slotMask;
      }
      bits |= code << nBits;
      nBits += width;
      while (nBits >= 8) {
        out[o++] = bits & 0xff;
        bits >>>= 8;
        nBits -= 8;
      }
      code = b;
      hi++;
      if (hi === overflow) {
        width++;
        overflow <<= 1;
      }
      if (hi === maxCode) {
        bits |= clear << nBits;
        nBits += width;
        while (nBits >= 8) {
          out[o++] = bits & 0xff;
          bits >>>= 8;
          nBits -= 8;
        }
        width = firstWidth;
        hi = eof;
        overflow = 1 << firstWidth;
        table.fill(0);
        continue;
      }
      // The probe above stopped at the first empty slot on this pair's path.
      table[slot] = ((pair << codeShift) | hi) >>> 0;
    }
    this.code = code;
    this.hi = hi;
    this.overflow = overflow;
    this.width = width;
    this.bits = bits;
    this.nBits = nBits;
    return out.subarray(0, o);
  }

  /** The last code, the EOF code and the final partial byte. */
  end(): Buffer {
    if (this.ended) return Buffer.alloc(0);
    this.ended = true;
    const out: number[] = [];
    const put = (c: number): void => {
      this.bits |= c << this.nBits;
      this.nBits += this.width;
      while (this.nBits >= 8) {
        out.push(this.bits & 0xff);
        this.bits >>>= 8;
        this.nBits -= 8;
      }
    };
    if (this.code >= 0) {
      put(this.code);
      // As after any code: the implied next code may widen the EOF code, or force a clear first.
      this.hi++;
      if (this.hi === this.overflow) {
        this.width++;
        this.overflow <<= 1;
      }
      if (this.hi === MAX_CODE) {
        put(CLEAR);
        this.width = FIRST_WIDTH;
      }
    }
    put(EOF);
    if (this.nBits > 0) out.push(this.bits & 0xff);
    return Buffer.from(out);
  }
}

/** Room kept free in the decoder's output: the longest expansion of one code. */
const LONGEST = MAX_CODE + 2;

/** Decoder state across writes, as Go's reader: the table is (prefix code, last byte) per code. */
export class LzwDecoder {
  private readonly prefix = new Uint16Array(MAX_CODE + 1);
  private readonly suffix = new Uint8Array(MAX_CODE + 1);
  // First byte and length of each code's expansion, so an expansion is written in one pass.
  private readonly head = new Uint8Array(MAX_CODE + 1);
  private readonly length = new Uint16Array(MAX_CODE + 1);
  private readonly scratch = Buffer.allocUnsafe(64 * 1024);
  private bits = 0;
  private nBits = 0;
  private width = FIRST_WIDTH;
  private hi = EOF;
  private overflow = 1 << FIRST_WIDTH;
  /** The previous code, or -1 when the next code defines nothing (after a clear, or a full table). */
  private last = -1;
  /** Input bytes consumed, for error messages. */
  private consumed = 0;
  /** The EOF code was read; like Go, anything after it is ignored. */
  done = false;

  constructor() {
    for (let c = 0; c < CLEAR; c++) {
      this.head[c] = c;
      this.length[c] = 1;
    }
  }

  /**
   * Decodes input from `start` until it is used up, the EOF code, or up to ~64 KB of output,
   * whichever comes first; returns where it stopped, so a caller can wait for demand in between.
   */
  write(input: Uint8Array, start = 0): { pos: number; out: Buffer } {
    if (this.done) return { pos: input.length, out: Buffer.alloc(0) };
    const { prefix, suffix, head, length, scratch: out } = this;
    let { bits, nBits, width, hi, overflow, last } = this;
    const n = input.length;
    const limit = out.length - LONGEST;
    // Module constants as locals, as in the encoder.
    const clear = CLEAR;
    const eof = EOF;
    const firstWidth = FIRST_WIDTH;
    const maxWidth = MAX_WIDTH;
    let p = start;
    let o = 0;
    decode: while (o <= limit) {
      while (nBits < width) {
        if (p >= n) break decode;
        bits |= (input[p++] as number) << nBits;
        nBits += 8;
      }
      const code = bits & ((1 << width) - 1);
      bits >>>= width;
      nBits -= width;
      let first: number;
      if (code < clear) {
        out[o++] = code;
        first = code;
      } else if (code === clear) {
        width = firstWidth;
        hi = eof;
        overflow = 1 << firstWidth;
        last = -1;
        continue;
      } else if (code === eof) {
        this.done = true;
        break;
      } else if (code <= hi) {
        // code === hi is the code being defined right now (KwKwK): the last expansion plus its own first byte.
        const pending = code === hi && last >= 0;
        let c = pending ? last : code;
        first = head[c] as number;
        const len = (length[c] as number) + (pending ? 1 : 0);
        let q = o + len - 1;
        if (pending) out[q--] = first;
        while (c > 0xff) {
          out[q--] = suffix[c] as number;
          c = prefix[c] as number;
        }
        out[q] = c;
        o += len;
      } else {
        throw new LzwError(`lzw: invalid code ${code} at byte ${this.consumed + (p - start) - 1}`);
      }
      if (last >= 0) {
        prefix[hi] = last;
        suffix[hi] = first;
        head[hi] = head[last] as number;
        length[hi] = (length[last] as number) + 1;
      }
      last = code;
      hi++;
      if (hi >= overflow) {
        // At 12 bits the table is full: keep decoding with it, defining nothing, until a clear.
        if (width === maxWidth) {
          last = -1;
          hi--;
        } else {
          width++;
          overflow <<= 1;
        }
      }
    }
    this.bits = bits;
    this.nBits = nBits;
    this.width = width;
    this.hi = hi;
    this.overflow = overflow;
    this.last = last;
    this.consumed += p - start;
    // Copied out: the scratch buffer is reused by the next call.
    return { pos: this.done ? n : p, out: Buffer.from(out.subarray(0, o)) };
  }

  end(): void {
    if (!this.done) throw new LzwError(`lzw: unexpected end of data after ${this.consumed} bytes (no EOF code)`);
  }
}

/** Input slices per step: the output of one is at most 1.5x, so pushing it whole stays bounded. */
const ENCODE_SLICE = 64 * 1024;

class LzwCompressStream extends Transform {
  private readonly encoder = new LzwEncoder();

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      for (let i = 0; i < chunk.length; i += ENCODE_SLICE) {
        const out = this.encoder.write(chunk.subarray(i, i + ENCODE_SLICE));
        if (out.length > 0) this.push(out);
      }
      done();
    } catch (err) {
      done(labelled('lzw', err));
    }
  }

  override _flush(done: TransformCallback): void {
    this.push(this.encoder.end());
    done();
  }
}

/**
 * One input chunk can expand ~2700x, so a chunk is decoded a piece at a time and, when the reader
 * is full, decoding waits for `_read` before going on.
 */
class LzwDecompressStream extends Transform {
  private readonly decoder = new LzwDecoder();
  private input: Buffer | undefined;
  private pos = 0;
  private next: TransformCallback | undefined;
  private pumping = false;
  /** A read came from inside push() (a consumer reading in its 'data' handler) and no push followed it yet. */
  private unanswered = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.input = chunk;
    this.pos = 0;
    this.next = done;
    this.pump();
  }

  override _read(size: number): void {
    if (!this.next) super._read(size);
    else if (this.pumping) this.unanswered = true;
    else this.pump();
  }

  override _flush(done: TransformCallback): void {
    try {
      this.decoder.end();
      done();
    } catch (err) {
      done(labelled('lzw', err));
    }
  }

  private pump(): void {
    const input = this.input;
    const done = this.next;
    if (!input || !done) return;
    let error: Error | undefined;
    this.pumping = true;
    try {
      for (;;) {
        const step = this.decoder.write(input, this.pos);
        this.pos = step.pos;
        let more = true;
        if (step.out.length > 0) {
          this.unanswered = false;
          more = this.push(step.out);
        }
        if (this.pos >= input.length) break;
        if (!more && !this.unanswered) return;
      }
    } catch (err) {
      error = labelled('lzw', err);
    } finally {
      this.pumping = false;
    }
    this.input = undefined;
    this.next = undefined;
    // Outside the loop: done() may start the next chunk's pump right away.
    done(error);
    if (this.unanswered && !error) {
      // Readable asks again only after a push; answer the read here so neither side waits forever.
      this.unanswered = false;
      this._read(0);
    }
  }
}
