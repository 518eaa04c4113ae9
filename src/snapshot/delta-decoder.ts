/**
 * The delta payload (delta-format.ts) decoded as it arrives, event by event: a restore holds one
 * event's JSON at a time instead of a whole decoded delta (a 9 MiB delta decoded at once holds
 * about 37 MiB of heap). The bytes and the errors are those of `decodeDelta`: the same JSON, the
 * same lease precision, the checksum found wrong before any format problem is reported.
 *
 * The sha256 trailer is the payload's last 32 bytes, so it is known only at the end: events come
 * out before the bytes that prove them are checked. A caller must not keep what it did with them
 * unless `end()` succeeds (the restore replays into a temporary etcd that is thrown away otherwise).
 */
import { createHash, type Hash } from 'node:crypto';
import { describe, DeltaFormatError, parseDeltaJson, SHA256_BYTES, toEvent, type DeltaEvent } from './delta-format.js';

const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** Where the scanner is in `[ element , element ]`. */
type State = 'before' | 'first' | 'element' | 'after' | 'next' | 'end' | 'skip';

/** What a non-array payload is, as the whole-buffer decoder says it from JSON.parse's result. */
function whatStartsWith(b: number): string {
  if (b === OPEN_OBJECT) return describe({});
  if (b === QUOTE) return describe('');
  if (b === 0x74 || b === 0x66) return describe(true);
  if (b === 0x6e) return describe(null);
  if (b === 0x2d || (b >= 0x30 && b <= 0x39)) return describe(0);
  return '';
}

export class DeltaDecoder {
  private readonly hash: Hash = createHash('sha256');
  /** The last bytes seen: the trailer, once the input has ended. */
  private tail = Buffer.alloc(0);
  private total = 0;
  private jsonOffset = 0;
  private state: State = 'before';
  /** The first problem found; reported by end(), after the checksum, as decodeDelta orders them. */
  private damage: DeltaFormatError | undefined;
  // The element being read: nesting, string state and its bytes so far (pieces of earlier input).
  private depth = 0;
  private inString = false;
  private escaped = false;
  private parts: Buffer[] = [];
  private index = 0;

  /** Events completed by this chunk, in order. */
  write(chunk: Buffer): DeltaEvent[] {
    this.total += chunk.length;
    const out: DeltaEvent[] = [];
    if (chunk.length >= SHA256_BYTES) {
      if (this.tail.length > 0) this.consume(this.tail, out);
      this.consume(chunk.subarray(0, chunk.length - SHA256_BYTES), out);
      // Copied: the held bytes must not keep the whole chunk alive.
      this.tail = Buffer.from(chunk.subarray(chunk.length - SHA256_BYTES));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      const cut = Math.max(0, joined.length - SHA256_BYTES);
      if (cut > 0) this.consume(joined.subarray(0, cut), out);
      this.tail = joined.subarray(cut);
    }
    return out;
  }

  /** Events are no longer wanted: what follows is only hashed, for end() to check the trailer. */
  skipRest(): void {
    if (this.state !== 'end') this.state = 'skip';
    this.parts = [];
  }

  /** Events decoded so far. */
  get events(): number {
    return this.index;
  }

  /** Checks the trailer and that the JSON ended; throws DeltaFormatError otherwise. */
  end(): void {
    if (this.total < SHA256_BYTES) throw new DeltaFormatError(`delta too short: ${this.total} bytes, less than its ${SHA256_BYTES}-byte sha256 trailer`);
    const actual = this.hash.digest();
    if (!actual.equals(this.tail)) throw new DeltaFormatError(`delta checksum mismatch: the payload's sha256 is ${actual.toString('hex')}, its trailer says ${this.tail.toString('hex')}`);
    if (this.damage) throw this.damage;
    if (this.state !== 'end' && this.state !== 'skip') throw new DeltaFormatError(`delta is not JSON: it ends after ${this.jsonOffset} bytes inside the array`);
  }

  private fail(problem: DeltaFormatError): void {
    this.damage ??= problem;
    this.skipRest();
  }

  /** JSON bytes (the trailer is held back): hashed, and scanned for the end of each element. */
  private consume(piece: Buffer, out: DeltaEvent[]): void {
    this.hash.update(piece);
    const base = this.jsonOffset;
    this.jsonOffset += piece.length;
    let i = 0;
    let start = 0;
    const n = piece.length;
    // The next backslash at or after i, found once per piece rather than once per string.
    let nextBackslash = -2;
    while (i < n) {
      switch (this.state) {
        case 'skip':
        case 'end': {
          if (this.state === 'skip') return;
          for (; i < n; i++) {
            if (!isSpace(piece[i] as number)) {
              this.fail(new DeltaFormatError(`delta is not JSON: unexpected data after the array at byte ${base + i}`));
              return;
            }
          }
          return;
        }
        case 'before': {
          const b = piece[i] as number;
          if (isSpace(b)) {
            i++;
          } else if (b === OPEN_ARRAY) {
            this.state = 'first';
            i++;
          } else {
            const what = whatStartsWith(b);
            this.fail(new DeltaFormatError(what ? `delta is not a JSON array of events (it is ${what})` : `delta is not JSON: unexpected byte 0x${b.toString(16)} at byte ${base + i}`));
            return;
          }
          break;
        }
        case 'first':
        case 'next':
        case 'after': {
          const b = piece[i] as number;
          if (isSpace(b)) {
            i++;
          } else if (this.state === 'after' && b === COMMA) {
            this.state = 'next';
            i++;
          } else if (b === CLOSE_ARRAY && this.state !== 'next') {
            this.state = 'end';
            i++;
          } else if (this.state === 'after') {
            this.fail(new DeltaFormatError(`delta is not JSON: expected , or ] at byte ${base + i}`));
            return;
          } else {
            this.state = 'element';
            start = i;
          }
          break;
        }
        case 'element': {
          if (this.inString) {
            if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = piece.indexOf(BACKSLASH, i);
            const quote = piece.indexOf(QUOTE, i);
            if (!this.escaped && quote !== -1 && (nextBackslash === -1 || nextBackslash > quote)) {
              // No escape before the closing quote: jump to it (base64 values are most of a delta).
              this.inString = false;
              i = quote + 1;
              break;
            }
            if (!this.escaped && quote === -1 && nextBackslash === -1) {
              i = n;
              break;
            }
            for (; i < n; i++) {
              const b = piece[i] as number;
              if (this.escaped) this.escaped = false;
              else if (b === BACKSLASH) this.escaped = true;
              else if (b === QUOTE) {
                this.inString = false;
                i++;
                break;
              }
            }
            break;
          }
          const b = piece[i] as number;
          if (b === QUOTE) this.inString = true;
          else if (b === OPEN_OBJECT || b === OPEN_ARRAY) this.depth++;
          else if ((b === CLOSE_OBJECT || b === CLOSE_ARRAY) && this.depth > 0) this.depth--;
          else if (this.depth === 0 && (b === COMMA || b === CLOSE_ARRAY)) {
            const ev = this.element(piece.subarray(start, i));
            if (!ev) return;
            out.push(ev);
            this.state = 'after';
            // The comma or bracket is read again in 'after'.
            break;
          }
          i++;
          break;
        }
      }
    }
    if (this.state === 'element') this.parts.push(piece.subarray(start));
  }

  private element(last: Buffer): DeltaEvent | undefined {
    const bytes = this.parts.length === 0 ? last : Buffer.concat([...this.parts, last]);
    this.parts = [];
    try {
      return toEvent(parseDeltaJson(bytes.toString('utf8')), this.index++);
    } catch (err) {
      this.fail(err instanceof DeltaFormatError ? err : new DeltaFormatError((err as Error).message));
      return undefined;
    }
  }
}
