/**
 * etcd's KV service (Txn, Range) called over one HTTP/2 connection with many calls in flight: the
 * transport of a restore's replay into its temporary etcd, where the client's CPU per call decides
 * the replay's rate (README, Restore).
 *
 * Why not grpc-js. Measured on this project's 2 shared cores (bench/replay-transport.ts, results in
 * bench/results/replay-transport.txt: guarded one-put transactions, 16 in flight, etcd 3.5), Node
 * CPU per call: etcd3's client 182-221 µs, grpc-js alone (one channel, no pool, no policies)
 * 171-190 µs, the same calls on node:http2 89-97 µs; protobuf encoding is about 2 µs of it.
 * grpc-js's own per-call machinery (call stack, filters, metadata, its state machine) is half the
 * cost, so this file speaks gRPC's unary wire format itself: one request stream per call, the
 * message length-prefixed (5 bytes), the status in the trailers (or in the headers when etcd
 * answers with trailers only). Messages are encoded and decoded by @grpc/proto-loader (protobufjs)
 * from etcd3's own rpc.proto, so the schema is etcd3's.
 *
 * No retries: a transaction retried after a lost answer could apply twice. Every call has the same
 * deadline (sent to etcd as grpc-timeout, and enforced here by one DeadlineSweep, so a frozen etcd
 * fails the call with a DeadlineError instead of hanging it). No auth token: the only etcd this
 * talks to is a restore's own temporary etcd on loopback, which runs with auth off even when the
 * snapshot had it on (bolt-auth.ts).
 */
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { createRequire } from 'node:module';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { DeadlineSweep, type SweptDeadline } from '../resilience.js';
import type { ICompare, IRequestOp } from 'etcd3';

/** One put or delete of a replayed revision, as etcd's Txn takes it (etcd3's shape of it). */
export type TxnOp = IRequestOp;
/** One compare of a guarded transaction, as etcd's Txn takes it. */
export type TxnCompare = ICompare;

/** gRPC status codes by number, for error messages (grpc/doc/statuscodes.md). */
const STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** A call etcd answered with a gRPC status other than OK, or that broke off on the connection. */
export class KvCallError extends Error {
  override name = 'KvCallError';
  constructor(
    readonly method: string,
    /** gRPC status; UNAVAILABLE (14) when the connection or stream broke. */
    readonly code: number,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`etcd ${method}: ${STATUS_NAMES[code] ?? `status ${code}`}: ${detail}`, options);
  }
}

type Method = MethodDefinition<object, object>;

interface KvMethods {
  txn: Method;
  range: Method;
}

let methods: KvMethods | undefined;

/** etcd3's rpc.proto, loaded once, with etcd3's own options (so requests take the same objects). */
function kvMethods(): KvMethods {
  if (!methods) {
    const proto = createRequire(import.meta.url).resolve('etcd3/proto/rpc.proto');
    const def = loadSync(proto, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const kv = def['etcdserverpb.KV'] as Record<string, Method>;
    methods = { txn: kv['Txn'] as Method, range: kv['Range'] as Method };
  }
  return methods;
}

interface TxnResponse {
  header: { revision: string };
  succeeded: boolean;
}

/** Below this size a message is copied behind its prefix (one write); above, written after it (no copy). */
const COPY_BELOW_BYTES = 64 * 1024;

export interface KvChannelOptions {
  /** Deadline of every call, ms. */
  deadlineMs: number;
}

export class KvChannel {
  private session: ClientHttp2Session | undefined;
  private readonly deadlines: DeadlineSweep;
  private readonly methods = kvMethods();
  private closed = false;

  constructor(
    /** http://host:port of one etcd member. */
    readonly url: string,
    opts: KvChannelOptions,
  ) {
    if (!url.startsWith('http://')) throw new Error(`KV channel to ${url}: only plain http:// on loopback is supported (the temporary etcd's)`);
    this.deadlines = new DeadlineSweep(opts.deadlineMs);
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.deadlines.size;
  }

  /** One transaction; `success` applies if every compare holds, else nothing (no failure branch). */
  async txn(compare: TxnCompare[], success: TxnOp[]): Promise<{ succeeded: boolean; revision: number }> {
    const m = this.methods.txn;
    const res = m.responseDeserialize(await this.unary('Txn', m.requestSerialize({ compare, success, failure: [] }))) as TxnResponse;
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  /** How many keys `key` matches, read from this member alone (no raft entry); resolves with etcd's revision. */
  async countSerializable(key: Buffer): Promise<{ count: number; revision: number }> {
    const m = this.methods.range;
    const res = m.responseDeserialize(await this.unary('Range', m.requestSerialize({ key, serializable: true, count_only: true }))) as { header: { revision: string }; count: string };
    return { count: Number(res.count), revision: Number(res.header.revision) };
  }

  /** Ends the connection; calls in flight fail with UNAVAILABLE. */
  close(): void {
    this.closed = true;
    this.session?.destroy();
    this.session = undefined;
  }

  private connection(): ClientHttp2Session {
    if (this.closed) throw new KvCallError('connect', 14, `the channel to ${this.url} is closed`);
    const live = this.session;
    if (live && !live.closed && !live.destroyed) return live;
    // Stream errors reach each call; the session's own error only precedes their close.
    const s = connect(this.url).on('error', () => {});
    // Calls in flight hold their deadline's timer; an idle channel must not keep a process alive.
    s.unref();
    this.session = s;
    return s;
  }

  private unary(method: string, message: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const session = this.connection();
      const stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: `/etcdserverpb.KV/${method}`,
        [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        [constants.HTTP2_HEADER_TE]: 'trailers',
        'grpc-timeout': `${this.deadlines.ms}m`,
      });
      let settled = false;
      const settle = (err: Error | undefined, body?: Buffer): void => {
        if (settled) return;
        settled = true;
        this.deadlines.end(deadline);
        if (err) reject(err);
        else resolve(body as Buffer);
      };
      const deadline: SweptDeadline = this.deadlines.start(`etcd ${method} on ${this.url}`, (err) => {
        stream.close(constants.NGHTTP2_CANCEL);
        settle(err);
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let detail = '';
      let streamError: Error | undefined;
      const readStatus = (h: IncomingHttpHeaders): void => {
        const s = h['grpc-status'];
        if (typeof s !== 'string') return;
        status = s;
        const m = h['grpc-message'];
        detail = typeof m === 'string' ? decodeGrpcMessage(m) : '';
      };
      stream.on('response', (h) => {
        const code = h[constants.HTTP2_HEADER_STATUS];
        if (Number(code) !== 200) streamError = new KvCallError(method, 14, `HTTP status ${String(code)} from ${this.url}`);
        readStatus(h);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('trailers', readStatus);
      stream.on('error', (err: Error) => (streamError ??= new KvCallError(method, 14, `${this.url}: ${err.message}`, { cause: err })));
      stream.on('close', () => {
        settle(...outcome());
      });
      const outcome = (): [Error | undefined, Buffer?] => {
        if (streamError) return [streamError];
        if (status === undefined) return [new KvCallError(method, 14, `${this.url} closed the stream without a gRPC status (HTTP/2 code ${stream.rstCode ?? 'none'})`)];
        if (status !== '0') return [new KvCallError(method, Number(status), detail)];
        try {
          return [undefined, unframe(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))];
        } catch (err) {
          return [new KvCallError(method, 13, (err as Error).message)];
        }
      };
      const prefix = Buffer.allocUnsafe(5);
      prefix[0] = 0; // not compressed
      prefix.writeUInt32BE(message.length, 1);
      if (message.length < COPY_BELOW_BYTES) stream.end(Buffer.concat([prefix, message], 5 + message.length));
      else {
        stream.write(prefix);
        stream.end(message);
      }
    });
  }
}

/** The one message of a unary response, out of its gRPC length prefix. */
function unframe(body: Buffer): Buffer {
  if (body.length < 5) throw new Error(`response of ${body.length} bytes, shorter than gRPC's 5-byte prefix`);
  if (body[0] !== 0) throw new Error('compressed response, though none was asked for');
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error(`response of ${body.length - 5} bytes, announced as ${length}`);
  return body.subarray(5);
}

/** grpc-message is percent-encoded (gRPC over HTTP/2); a malformed one is shown as sent. */
function decodeGrpcMessage(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}
