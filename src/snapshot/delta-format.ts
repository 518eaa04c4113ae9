/**
 * The anchor's delta snapshot payload: a JSON array of `{"etcdEvent": <clientv3.Event>, "time":
 * <time.Time>}` exactly as Go's encoding/json writes it, followed by the raw sha256 of that JSON.
 * clientv3.Event is etcd's mvccpb.Event, so the JSON follows its protobuf-generated tags: every
 * field omitempty (a PUT has no "type", empty keys/values and zero numbers are left out), byte
 * slices as padded standard base64, int64 as bare numbers.
 */
import { createHash, type Hash } from 'node:crypto';
import type { KeyValue } from '../etcd/watch.js';

export type KeyValueRecord = KeyValue;

export interface DeltaEvent {
  type: 'put' | 'delete';
  kv: KeyValueRecord;
  prevKv?: KeyValueRecord;
  /** RFC 3339 timestamp; the anchor writes local time with nanoseconds, we write toISOString(). */
  time: string;
}

export class DeltaFormatError extends Error {
  override name = 'DeltaFormatError';
}

export const SHA256_BYTES = 32;
/** What Go's time.Time accepts from JSON (RFC 3339, up to nanoseconds). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const INT64_DECIMAL = /^(0|-?[1-9]\d{0,18})$/;
const INT64_MAX = 2n ** 63n - 1n;
/** Go's zero time.Time, which is what an event without "time" decodes to. */
const ZERO_TIME = '0001-01-01T00:00:00Z';

/**
 * Standard padded base64 as Go's encoding/json writes []byte, decoded, or undefined when it is not.
 * Not a regular expression: on values of kilobytes one took a quarter of a restore's CPU. Node's
 * decoder skips what is outside its alphabets and stops at '=', so any such character leaves fewer
 * bytes than the length announces; it also takes base64url's '-' and '_', which Go's does not.
 */
export function decodeStdBase64(s: string): Buffer | undefined {
  if (s.length % 4 !== 0) return undefined;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = Buffer.from(s, 'base64');
  if (out.length !== (s.length / 4) * 3 - pad || s.includes('-') || s.includes('_')) return undefined;
  return out;
}

function isInt64(s: string): boolean {
  if (!INT64_DECIMAL.test(s)) return false;
  if (s.length < 19) return true;
  const v = BigInt(s);
  return v <= INT64_MAX && v >= -INT64_MAX - 1n;
}

function checkKv(kv: KeyValueRecord, field: string): void {
  for (const name of ['createRevision', 'modRevision', 'version'] as const) {
    const v = kv[name];
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${field}.${name} ${v} is not a revision`);
  }
  if (!isInt64(kv.lease)) throw new RangeError(`${field}.lease ${JSON.stringify(kv.lease)} is not an int64 in decimal`);
}

function kvJson(kv: KeyValueRecord): string {
  // Field order and omission as Go marshals mvccpb.KeyValue.
  let s = '';
  if (kv.key.length > 0) s += `,"key":"${kv.key.toString('base64')}"`;
  if (kv.createRevision !== 0) s += `,"create_revision":${kv.createRevision}`;
  if (kv.modRevision !== 0) s += `,"mod_revision":${kv.modRevision}`;
  if (kv.version !== 0) s += `,"version":${kv.version}`;
  if (kv.value.length > 0) s += `,"value":"${kv.value.toString('base64')}"`;
  if (kv.lease !== '0') s += `,"lease":${kv.lease}`;
  return `{${s.slice(1)}}`;
}

/** Go's json.Marshal of the anchor's event wrapper. All of it is ASCII. */
export function eventJson(ev: DeltaEvent): string {
  checkKv(ev.kv, 'kv');
  if (ev.prevKv) checkKv(ev.prevKv, 'prevKv');
  // Validated rather than escaped: Go's escaping differs from JSON.stringify's, and an RFC 3339 string needs none.
  if (!RFC3339.test(ev.time)) throw new RangeError(`time ${JSON.stringify(ev.time)} is not an RFC 3339 timestamp`);
  const type = ev.type === 'delete' ? '"type":1,' : '';
  const prev = ev.prevKv ? `,"prev_kv":${kvJson(ev.prevKv)}` : '';
  return `{"etcdEvent":{${type}"kv":${kvJson(ev.kv)}${prev}},"time":"${ev.time}"}`;
}

/** Small event strings are joined up to this size before becoming a Buffer. */
const CHUNK_BYTES = 64 * 1024;

/**
 * Collects events into the payload as they come, as the anchor does, keeping the JSON as Buffers
 * (about its own size in memory) and hashing it on the way.
 */
export class DeltaBuilder {
  private chunks: Buffer[] = [];
  private pending: string[] = [];
  private pendingBytes = 0;
  private hash: Hash = createHash('sha256');
  private events = 0;
  private bytes = 0;
  private first: number | undefined;
  private last: number | undefined;

  add(ev: DeltaEvent): void {
    const rev = ev.kv.modRevision;
    if (this.last !== undefined && rev < this.last) throw new RangeError(`event at revision ${rev} after revision ${this.last}: revisions must not go back`);
    const json = eventJson(ev);
    this.append(this.events === 0 ? '[' : ',');
    this.append(json);
    this.events++;
    this.first ??= rev;
    this.last = rev;
  }

  get eventCount(): number {
    return this.events;
  }

  /** Length of the JSON finish() will return (with its closing bracket); 0 while empty. */
  get byteLength(): number {
    return this.events === 0 ? 0 : this.bytes + 1;
  }

  get firstRevision(): number | undefined {
    return this.first;
  }

  get lastRevision(): number | undefined {
    return this.last;
  }

  /** The JSON in chunks, then the 32-byte sha256 trailer; the builder starts over empty. */
  finish(): Buffer[] {
    this.append(this.events === 0 ? '[]' : ']');
    this.flush();
    const out = this.chunks;
    out.push(this.hash.digest());
    this.chunks = [];
    this.hash = createHash('sha256');
    this.events = 0;
    this.bytes = 0;
    this.first = undefined;
    this.last = undefined;
    return out;
  }

  private append(s: string): void {
    this.pending.push(s);
    this.pendingBytes += s.length;
    this.bytes += s.length;
    if (this.pendingBytes >= CHUNK_BYTES) this.flush();
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    // latin1 is exact here: eventJson only produces ASCII.
    const chunk = Buffer.from(this.pending.join(''), 'latin1');
    this.hash.update(chunk);
    this.chunks.push(chunk);
    this.pending = [];
    this.pendingBytes = 0;
  }
}

/** The uncompressed delta object: JSON and its sha256. */
export function encodeDelta(events: DeltaEvent[]): Buffer {
  const builder = new DeltaBuilder();
  for (const ev of events) builder.add(ev);
  return Buffer.concat(builder.finish());
}

/** Reads an uncompressed delta object, as written by the anchor or by us. */
export function decodeDelta(payload: Buffer): DeltaEvent[] {
  if (payload.length < SHA256_BYTES) throw new DeltaFormatError(`delta too short: ${payload.length} bytes, less than its ${SHA256_BYTES}-byte sha256 trailer`);
  const json = payload.subarray(0, payload.length - SHA256_BYTES);
  const trailer = payload.subarray(payload.length - SHA256_BYTES);
  const actual = createHash('sha256').update(json).digest();
  if (!actual.equals(trailer)) throw new DeltaFormatError(`delta checksum mismatch: the payload's sha256 is ${actual.toString('hex')}, its trailer says ${trailer.toString('hex')}`);
  const parsed = parseDeltaJson(json.toString('utf8'));
  if (!Array.isArray(parsed)) throw new DeltaFormatError(`delta is not a JSON array of events (it is ${describe(parsed)})`);
  return parsed.map((item: unknown, i) => toEvent(item, i));
}

/**
 * JSON.parse with the lease numbers quoted first so they keep every digit (an int64 lease id goes
 * past 2^53). Nothing inside a string can match: the only strings in this format are base64 and
 * timestamps, which hold no quote marks.
 */
export function parseDeltaJson(text: string): unknown {
  try {
    return JSON.parse(text.replace(/"lease"\s*:\s*(-?\d+)/g, '"lease":"$1"'));
  } catch (err) {
    throw new DeltaFormatError(`delta is not JSON: ${(err as Error).message}`);
  }
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(i: number, field: string, problem: string): never {
  throw new DeltaFormatError(`delta event ${i}: ${field} ${problem}`);
}

/** One parsed array element as an event; `i` is its place in the array, for the error. */
export function toEvent(item: unknown, i: number): DeltaEvent {
  if (!isObject(item)) invalid(i, 'event', `is ${describe(item)}, not an object`);
  const ev = item.etcdEvent;
  if (!isObject(ev)) invalid(i, 'etcdEvent', ev === undefined ? 'is missing' : `is ${describe(ev)}, not an object`);
  const type = ev.type ?? 0;
  if (type !== 0 && type !== 1) invalid(i, 'etcdEvent.type', `is ${JSON.stringify(type)}, not 0 (PUT) or 1 (DELETE)`);
  if (!isObject(ev.kv)) invalid(i, 'etcdEvent.kv', ev.kv === undefined ? 'is missing' : `is ${describe(ev.kv)}, not an object`);
  const time = item.time ?? ZERO_TIME;
  if (typeof time !== 'string' || !RFC3339.test(time)) invalid(i, 'time', `is ${JSON.stringify(time)}, not an RFC 3339 timestamp`);
  const out: DeltaEvent = { type: type === 1 ? 'delete' : 'put', kv: toKv(ev.kv, i, 'etcdEvent.kv'), time };
  const prev = ev.prev_kv;
  if (prev !== undefined && prev !== null) {
    if (!isObject(prev)) invalid(i, 'etcdEvent.prev_kv', `is ${describe(prev)}, not an object`);
    out.prevKv = toKv(prev, i, 'etcdEvent.prev_kv');
  }
  return out;
}

function toKv(kv: Record<string, unknown>, i: number, field: string): KeyValueRecord {
  const bytes = (name: string): Buffer => {
    const v = kv[name] ?? '';
    const decoded = typeof v === 'string' ? decodeStdBase64(v) : undefined;
    if (!decoded) invalid(i, `${field}.${name}`, 'is not base64');
    return decoded;
  };
  const revision = (name: string): number => {
    const v = kv[name] ?? 0;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(i, `${field}.${name}`, `is ${JSON.stringify(v)}, not a revision`);
    return v;
  };
  const lease = kv.lease ?? '0';
  if (typeof lease !== 'string' || !isInt64(lease)) invalid(i, `${field}.lease`, `is ${JSON.stringify(lease)}, not an int64`);
  return {
    key: bytes('key'),
    value: bytes('value'),
    createRevision: revision('create_revision'),
    modRevision: revision('mod_revision'),
    version: revision('version'),
    lease,
  };
}
