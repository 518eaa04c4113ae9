/**
 * etcd's KV service (Txn, Range) called over one HTTP/2 connection with many calls in flight: the
 * transport of a restore's replay into its temporary etcd, where the client's CPU per call decides
 * the replay's rate (README, Restore).
 *
 * Why not grpc-js, nor node:http2. Measured on this project's 2 shared cores
 * (bench/replay-transport.ts, results in bench/results/replay-transport.txt: guarded one-put
 * transactions, 16 in flight, etcd 3.5), Node CPU per call: etcd3's client 182-221 us, grpc-js alone
 * (one channel, no pool, no policies) 171-190 us, node:http2 86-139 us, the same calls framed by
 * h2-connection.ts a fraction of that. The per-call machinery around the wire, not the wire, was the
 * cost, so this file speaks gRPC's unary wire format itself: one request stream per call, the
 * message length-prefixed (5 bytes), the status in the trailers (or in the headers when etcd
 * answers with trailers only). Messages are encoded and decoded by @grpc/proto-loader (protobufjs)
 * from etcd3's own rpc.proto, so the schema is etcd3's.
 *
 * No retries: a transaction retried after a lost answer could apply twice. Every call has the same
 * deadline, enforced here by one DeadlineSweep, so a frozen etcd fails the call with a DeadlineError
 * instead of hanging it. No auth token: the only etcd this
 * talks to is a restore's own temporary etcd on loopback, which runs with auth off even when the
 * snapshot had it on (bolt-auth.ts).
 */
import { createRequire } from 'node:module';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { DeadlineSweep, type SweptDeadline } from '../resilience.js';
import { H2Connection, H2Error, type H2Response, type Header } from './h2-connection.js';
import { literalHeaderBlock } from './hpack.js';
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

export interface KvChannelOptions {
  /** Deadline of every call, ms. */
  deadlineMs: number;
}

export class KvChannel {
  private connection: H2Connection | undefined;
  /** Earlier connections told to go away, finishing calls they took. */
  private readonly retired = new Set<H2Connection>();
  private readonly deadlines: DeadlineSweep;
  private readonly methods = kvMethods();
  private readonly host: string;
  private readonly port: number;
  /** host:port as the URL spells it, for :authority. */
  private readonly authority: string;
  /** Each method's request headers, encoded once (hpack.ts: literals that touch no table). */
  private readonly headerBlocks = new Map<string, Buffer>();
  private closed = false;

  constructor(
    /** http://host:port of one etcd member. */
    readonly url: string,
    opts: KvChannelOptions,
  ) {
    if (!url.startsWith('http://')) throw new Error(`KV channel to ${url}: only plain http:// on loopback is supported (the temporary etcd's)`);
    const { hostname, port, host } = new URL(url);
    if (!port) throw new Error(`KV channel to ${url}: the URL names no port`);
    // IPv6 hosts come bracketed in URLs, not in net.connect.
    this.host = hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = Number(port);
    this.authority = host;
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
    this.connection?.close();
    this.connection = undefined;
    for (const c of this.retired) c.close();
    this.retired.clear();
  }

  /** The live connection, or a new one once the last broke or was told to go away (its calls finish on it). */
  private live(): H2Connection {
    if (this.closed) throw new KvCallError('connect', 14, `the channel to ${this.url} is closed`);
    for (const c of this.retired) if (c.pending === 0) this.retired.delete(c);
    if (!this.connection?.usable) {
      if (this.connection && this.connection.pending > 0) this.retired.add(this.connection);
      this.connection = new H2Connection(this.host, this.port, this.url);
    }
    return this.connection;
  }

  /**
   * No grpc-timeout is sent: etcd applies a proposed transaction whether or not its caller's deadline
   * passed, so a server-side deadline would protect nothing and cost etcd a timer per call.
   */
  private headerBlock(method: string): Buffer {
    let block = this.headerBlocks.get(method);
    if (!block) {
      block = literalHeaderBlock([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', `/etcdserverpb.KV/${method}`],
        [':authority', this.authority],
        ['content-type', 'application/grpc'],
        ['te', 'trailers'],
      ]);
      this.headerBlocks.set(method, block);
    }
    return block;
  }

  private unary(method: string, message: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      // Throws on a closed channel, which rejects the call.
      const connection = this.live();
      const framed = Buffer.allocUnsafe(5 + message.length);
      framed[0] = 0; // not compressed
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, 5);
      const deadline: SweptDeadline = this.deadlines.start(`etcd ${method} on ${this.url}`, (err) => connection.cancel(call, err));
      const call = connection.request(this.headerBlock(method), framed, (err, res) => {
        this.deadlines.end(deadline);
        if (err instanceof H2Error) reject(new KvCallError(method, 14, err.message, { cause: err }));
        else if (err) reject(err);
        else {
          const [failure, body] = outcome(method, this.url, res as H2Response);
          if (failure) reject(failure);
          else resolve(body);
        }
      });
    });
  }
}

/** A unary answer: its one message, or the gRPC status it failed with. */
function outcome(method: string, url: string, res: H2Response): [KvCallError] | [undefined, Buffer] {
  const status = header(res.headers, ':status');
  if (status !== '200') return [new KvCallError(method, 14, `HTTP status ${status ?? 'none'} from ${url}`)];
  // The status is in the trailers, or in the headers when etcd answers with trailers only.
  const fields = res.trailers ?? res.headers;
  const grpcStatus = header(fields, 'grpc-status');
  if (grpcStatus === undefined) return [new KvCallError(method, 14, `${url} ended the call without a gRPC status`)];
  if (grpcStatus !== '0') {
    const m = header(fields, 'grpc-message');
    return [new KvCallError(method, Number(grpcStatus), m === undefined ? '' : decodeGrpcMessage(m))];
  }
  try {
    return [undefined, unframe(res.body)];
  } catch (err) {
    return [new KvCallError(method, 13, (err as Error).message)];
  }
}

function header(headers: Header[], name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
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
