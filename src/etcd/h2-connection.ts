/**
 * One client HTTP/2 connection (RFC 9113) over plain TCP, reduced to what gRPC unary calls to a
 * restore's temporary etcd need: requests with a body, answers with headers, data and trailers,
 * flow control both ways, SETTINGS, PING, RST_STREAM and GOAWAY. No TLS, no server push, no
 * priorities, no client-side header compression (hpack.ts).
 *
 * Why by hand. The replay's rate is bounded by the CPU the restoring process spends per call, and
 * node:http2 spends most of it around each stream (a Duplex per stream, header objects mapped both
 * ways, an async resource bound per request) rather than on the wire: measured on 2 cores with etcd
 * 3.5, guarded one-put transactions 16 in flight, node:http2 86-139 us of Node CPU per call against
 * 24-35 us for the same calls framed here (bench/replay-transport.ts). A call here is two frames
 * written into the socket and a record in a map.
 *
 * Frames out are corked and written together once per tick, so a burst of calls reaches etcd in
 * one write, in the order they were made (replay-window.ts relies on that order for speed only).
 */
import { connect, type Socket } from 'node:net';
import { HpackDecoder, HpackError, tableSizeUpdate } from './hpack.js';

export type Header = [name: string, value: string];

export interface H2Response {
  /** The response's first header block (for a trailers-only answer, the only one). */
  headers: Header[];
  trailers?: Header[];
  body: Buffer;
}

/** HTTP/2 error codes by number (RFC 9113, 7), for messages. */
const ERROR_CODES = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];
const errorName = (code: number): string => ERROR_CODES[code] ?? `error ${code}`;

/** The connection broke, the server refused it, or a stream was reset. */
export class H2Error extends Error {
  override name = 'H2Error';
  constructor(
    message: string,
    /** HTTP/2 error code: the peer's (RST_STREAM, GOAWAY), or the one this side sent it for breaking the protocol. */
    readonly code?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Frame types (RFC 9113, 6). */
const Frame = {
  Data: 0,
  Headers: 1,
  Priority: 2,
  RstStream: 3,
  Settings: 4,
  PushPromise: 5,
  Ping: 6,
  GoAway: 7,
  WindowUpdate: 8,
  Continuation: 9,
} as const;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** Frames that belong to the connection (stream 0) and frames that belong to a stream; WINDOW_UPDATE is both. */
const CONNECTION_FRAMES = new Set<number>([Frame.Settings, Frame.Ping, Frame.GoAway]);
const STREAM_FRAMES = new Set<number>([Frame.Data, Frame.Headers, Frame.Priority, Frame.RstStream, Frame.PushPromise, Frame.Continuation]);
/** Payload sizes RFC 9113 fixes (exact) or bounds from below. */
const FIXED_SIZES = new Map<number, { octets: number; exact: boolean }>([
  [Frame.Priority, { octets: 5, exact: true }],
  [Frame.RstStream, { octets: 4, exact: true }],
  [Frame.Ping, { octets: 8, exact: true }],
  [Frame.GoAway, { octets: 8, exact: false }],
  [Frame.WindowUpdate, { octets: 4, exact: true }],
]);
/** Error codes this side sends or tells apart (RFC 9113, 7). */
const NO_ERROR = 0;
const PROTOCOL_ERROR = 1;
const FLOW_CONTROL_ERROR = 3;
const FRAME_SIZE_ERROR = 6;
const CANCEL = 8;
const COMPRESSION_ERROR = 9;
/** The largest header block accepted (etcd's are a status and a message). */
const MAX_HEADER_BLOCK = 256 * 1024;
const DEFAULT_TABLE_SIZE = 4096;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DEFAULT_WINDOW = 65_535;
const DEFAULT_MAX_FRAME = 16_384;
const MAX_WINDOW = 2 ** 31 - 1;
const MAX_STREAM_ID = 2 ** 31 - 1;
/** What the server may send ahead of this side's reading, per stream and on the connection. */
const RECEIVE_WINDOW = 16 * 1024 * 1024;

/** A request as the caller holds it: to cancel it. */
export interface H2Call {
  readonly id: number;
}

type Done = (err: Error | undefined, res?: H2Response) => void;

interface Stream extends H2Call {
  id: number;
  headerBlock: Buffer;
  body: Buffer;
  /** Octets of the body sent so far. */
  sent: number;
  sendWindow: number;
  /** Octets received since this side last opened the stream's window. */
  unacked: number;
  headers?: Header[];
  trailers?: Header[];
  chunks: Buffer[];
  done: Done;
}

export class H2Connection {
  private readonly socket: Socket;
  /** Open streams, by id. */
  private readonly streams = new Map<number, Stream>();
  /** Requests waiting for the server's stream limit; their id is given when they start. */
  private readonly queued: Stream[] = [];
  /** Open streams with body left to send, waiting for window. */
  private readonly blocked = new Set<Stream>();
  private readonly decoder = new HpackDecoder();
  private nextId = 1;
  private sendWindow = DEFAULT_WINDOW;
  private peer = { initialWindow: DEFAULT_WINDOW, maxFrame: DEFAULT_MAX_FRAME, maxStreams: Infinity, tableSize: DEFAULT_TABLE_SIZE };
  private inbox: Buffer = Buffer.alloc(0);
  /** A header block split over CONTINUATION frames. */
  private continuing: { stream: number; endStream: boolean; parts: Buffer[]; octets: number } | undefined;
  /** The server lowered its header table: the next block starts with a size update (RFC 7541, 4.2). */
  private owedTableSize: number | undefined;
  private unackedOnConnection = 0;
  private corked = false;
  private failure: Error | undefined;
  /** A GOAWAY arrived: streams it covers finish, no new one starts here. */
  private draining = false;

  constructor(
    host: string,
    port: number,
    /** Names the server in errors. */
    private readonly name = `${host}:${port}`,
  ) {
    this.socket = connect({ host, port, noDelay: true });
    // An idle connection must not keep a process alive; callers hold timers for calls in flight.
    this.socket.unref();
    this.socket.on('data', (chunk: Buffer) => this.receive(chunk));
    this.socket.on('error', (err) => this.fail(new H2Error(`${this.name}: ${err.message}`, undefined, { cause: err })));
    this.socket.on('close', () => this.fail(new H2Error(`${this.name} closed the connection`)));
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(2, 0); // ENABLE_PUSH = 0
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(RECEIVE_WINDOW, 8);
    this.write(PREFACE);
    this.frame(Frame.Settings, 0, 0, settings);
    this.windowUpdate(0, RECEIVE_WINDOW - DEFAULT_WINDOW);
  }

  /** New requests may start here (not broken, not told to go away, stream ids left). */
  get usable(): boolean {
    return !this.failure && !this.draining && this.nextId <= MAX_STREAM_ID;
  }

  /** Open streams and requests waiting to open one. */
  get pending(): number {
    return this.streams.size + this.queued.length;
  }

  /** Sends `headerBlock` (HPACK) and `body`; `done` gets the answer or the reason there is none, once. */
  request(headerBlock: Buffer, body: Buffer, done: Done): H2Call {
    const stream: Stream = { id: 0, headerBlock, body, sent: 0, sendWindow: 0, unacked: 0, chunks: [], done };
    if (!this.usable) {
      process.nextTick(done, this.refusal());
      return stream;
    }
    this.queued.push(stream);
    this.startQueued();
    return stream;
  }

  /** Gives up on a call: its stream is reset (the server may still act on what it received) and `done` gets `reason`. */
  cancel(call: H2Call, reason: Error): void {
    const stream = call as Stream;
    const q = this.queued.indexOf(stream);
    if (q >= 0) {
      this.queued.splice(q, 1);
      stream.done(reason);
      return;
    }
    if (this.streams.get(stream.id) !== stream) return;
    this.rstStream(stream.id, CANCEL);
    this.finish(stream, reason);
  }

  /** Closes the socket; every call not answered fails. */
  close(): void {
    this.fail(new H2Error(`the connection to ${this.name} was closed by this side`));
  }

  /** Why a request cannot start here: the connection's failure, or its going away. */
  private refusal(): Error {
    return this.failure ?? new H2Error(`${this.name}: the connection takes no new requests`);
  }

  private startQueued(): void {
    while (this.queued.length > 0 && this.streams.size < this.peer.maxStreams && this.usable) {
      const stream = this.queued.shift() as Stream;
      stream.id = this.nextId;
      this.nextId += 2;
      stream.sendWindow = this.peer.initialWindow;
      this.streams.set(stream.id, stream);
      this.sendHeaders(stream);
      this.sendBody(stream);
    }
    if (!this.usable) for (const s of this.queued.splice(0)) s.done(this.refusal());
  }

  private sendHeaders(stream: Stream): void {
    let block = stream.headerBlock;
    if (this.owedTableSize !== undefined) {
      block = Buffer.concat([tableSizeUpdate(this.owedTableSize), block]);
      this.owedTableSize = undefined;
    }
    const max = this.peer.maxFrame;
    if (block.length <= max) {
      this.frame(Frame.Headers, END_HEADERS, stream.id, block);
      return;
    }
    this.frame(Frame.Headers, 0, stream.id, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      this.frame(Frame.Continuation, at + max >= block.length ? END_HEADERS : 0, stream.id, block.subarray(at, at + max));
    }
  }

  /** As much of the body as the windows allow; the last frame ends the stream. */
  private sendBody(stream: Stream): void {
    const { body } = stream;
    if (body.length === 0) {
      this.frame(Frame.Data, END_STREAM, stream.id);
      return;
    }
    while (stream.sent < body.length) {
      const n = Math.min(body.length - stream.sent, stream.sendWindow, this.sendWindow, this.peer.maxFrame);
      if (n <= 0) {
        this.blocked.add(stream);
        return;
      }
      const end = stream.sent + n === body.length;
      this.frame(Frame.Data, end ? END_STREAM : 0, stream.id, body.subarray(stream.sent, stream.sent + n));
      stream.sent += n;
      stream.sendWindow -= n;
      this.sendWindow -= n;
    }
    this.blocked.delete(stream);
  }

  private unblock(): void {
    for (const stream of this.blocked) {
      if (this.sendWindow <= 0) return;
      this.sendBody(stream);
    }
  }

  private receive(chunk: Buffer): void {
    let buf = this.inbox.length > 0 ? Buffer.concat([this.inbox, chunk]) : chunk;
    try {
      while (buf.length >= 9 && !this.failure) {
        const length = buf.readUIntBE(0, 3);
        if (length > DEFAULT_MAX_FRAME) throw new H2Error(`${this.name} sent a frame of ${length} octets, above the ${DEFAULT_MAX_FRAME} allowed`, FRAME_SIZE_ERROR);
        if (buf.length < 9 + length) break;
        this.onFrame(buf[3] as number, buf[4] as number, buf.readUInt32BE(5) & 0x7fffffff, buf.subarray(9, 9 + length));
        buf = buf.subarray(9 + length);
      }
    } catch (err) {
      // The server broke the protocol: it is told why before the connection closes.
      if (err instanceof H2Error) this.fail(err, err.code ?? PROTOCOL_ERROR);
      else this.fail(new H2Error(`${this.name}: ${(err as Error).message}`, undefined, { cause: err }), PROTOCOL_ERROR);
      return;
    }
    this.inbox = buf;
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.continuing && (type !== Frame.Continuation || id !== this.continuing.stream)) {
      throw new H2Error(`${this.name} interrupted a header block with a frame of type ${type}`, PROTOCOL_ERROR);
    }
    const size = FIXED_SIZES.get(type);
    if (size !== undefined && (size.exact ? payload.length !== size.octets : payload.length < size.octets)) {
      throw new H2Error(`${this.name} sent a frame of type ${type} with ${payload.length} octets of payload`, FRAME_SIZE_ERROR);
    }
    if (id === 0 ? STREAM_FRAMES.has(type) : CONNECTION_FRAMES.has(type)) {
      throw new H2Error(`${this.name} sent a frame of type ${type} on stream ${id}`, PROTOCOL_ERROR);
    }
    switch (type) {
      case Frame.Data:
        this.onData(flags, id, payload);
        return;
      case Frame.Headers: {
        let fragment = unpad(flags, payload, flags & PRIORITY ? 5 : 0);
        if (flags & PRIORITY) fragment = fragment.subarray(5);
        this.onHeaderFragment(id, (flags & END_STREAM) !== 0, (flags & END_HEADERS) !== 0, fragment);
        return;
      }
      case Frame.Continuation: {
        if (!this.continuing) throw new H2Error(`${this.name} sent CONTINUATION outside a header block`, PROTOCOL_ERROR);
        this.onHeaderFragment(id, this.continuing.endStream, (flags & END_HEADERS) !== 0, payload);
        return;
      }
      case Frame.RstStream: {
        const stream = this.streams.get(id);
        const code = payload.readUInt32BE(0);
        if (stream) this.finish(stream, new H2Error(`${this.name} reset the stream (${errorName(code)})`, code));
        return;
      }
      case Frame.Settings:
        if (flags & ACK) {
          if (payload.length > 0) throw new H2Error(`${this.name} acknowledged SETTINGS with a payload`, FRAME_SIZE_ERROR);
        } else this.onSettings(payload);
        return;
      case Frame.Ping:
        if (!(flags & ACK)) this.frame(Frame.Ping, ACK, 0, payload);
        return;
      case Frame.GoAway:
        this.onGoAway(payload);
        return;
      case Frame.WindowUpdate:
        this.onWindowUpdate(id, payload.readUInt32BE(0) & 0x7fffffff);
        return;
      case Frame.PushPromise:
        throw new H2Error(`${this.name} pushed a stream, though this side disabled push`, PROTOCOL_ERROR);
      default:
      // PRIORITY and unknown types carry nothing this side acts on (RFC 9113, 5.5).
    }
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    // Flow control counts the whole frame, padding included.
    this.unackedOnConnection += payload.length;
    if (this.unackedOnConnection >= RECEIVE_WINDOW / 2) {
      this.windowUpdate(0, this.unackedOnConnection);
      this.unackedOnConnection = 0;
    }
    const stream = this.streams.get(id);
    if (!stream) return; // cancelled here: its data is dropped
    stream.chunks.push(unpad(flags, payload));
    if (flags & END_STREAM) {
      this.complete(stream);
      return;
    }
    stream.unacked += payload.length;
    if (stream.unacked >= RECEIVE_WINDOW / 2) {
      this.windowUpdate(id, stream.unacked);
      stream.unacked = 0;
    }
  }

  private onHeaderFragment(id: number, endStream: boolean, endHeaders: boolean, fragment: Buffer): void {
    if (!endHeaders) {
      this.continuing ??= { stream: id, endStream, parts: [], octets: 0 };
      this.continuing.parts.push(fragment);
      this.continuing.octets += fragment.length;
      // etcd's headers are a status and a message: a block this large is not an answer.
      if (this.continuing.octets > MAX_HEADER_BLOCK) throw new H2Error(`${this.name} sent a header block above ${MAX_HEADER_BLOCK} octets`, PROTOCOL_ERROR);
      return;
    }
    const block = this.continuing ? Buffer.concat([...this.continuing.parts, fragment]) : fragment;
    this.continuing = undefined;
    let headers: Header[];
    try {
      // Decoded even for a stream cancelled here: the server's table moved with it.
      headers = this.decoder.decode(block);
    } catch (err) {
      if (err instanceof HpackError) throw new H2Error(`${this.name} sent a header block this side cannot decode: ${err.message}`, COMPRESSION_ERROR, { cause: err });
      throw err;
    }
    const stream = this.streams.get(id);
    if (!stream) return;
    if (stream.headers) stream.trailers = headers;
    else stream.headers = headers;
    if (endStream) this.complete(stream);
  }

  private onSettings(payload: Buffer): void {
    if (payload.length % 6 !== 0) throw new H2Error(`${this.name} sent SETTINGS of ${payload.length} octets`, FRAME_SIZE_ERROR);
    for (let at = 0; at < payload.length; at += 6) {
      const value = payload.readUInt32BE(at + 2);
      switch (payload.readUInt16BE(at)) {
        case 3:
          this.peer.maxStreams = value;
          break;
        case 4: {
          if (value > MAX_WINDOW) throw new H2Error(`${this.name} announced a window of ${value}`, FLOW_CONTROL_ERROR);
          const delta = value - this.peer.initialWindow;
          this.peer.initialWindow = value;
          for (const s of this.streams.values()) s.sendWindow += delta;
          break;
        }
        case 5:
          if (value < DEFAULT_MAX_FRAME || value > 16_777_215) throw new H2Error(`${this.name} announced a frame size of ${value}`, PROTOCOL_ERROR);
          this.peer.maxFrame = value;
          break;
        case 1:
          // This side never indexes, but a table lowered below what it was must be acknowledged in the next block.
          if (value < this.peer.tableSize) this.owedTableSize = Math.min(this.owedTableSize ?? value, value);
          this.peer.tableSize = value;
          break;
        default:
        // The others do not concern a client.
      }
    }
    this.frame(Frame.Settings, ACK, 0);
    this.unblock();
    this.startQueued();
  }

  private onGoAway(payload: Buffer): void {
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    const detail = payload.subarray(8).toString('utf8');
    const why = `${errorName(code)}${detail ? `: ${detail}` : ''}`;
    this.draining = true;
    // Streams above `last` were not processed and never will be.
    const err = new H2Error(`${this.name} is going away (${why}) and did not process the request`, code);
    for (const stream of [...this.streams.values()]) if (stream.id > last) this.finish(stream, err);
    // With an error the server answers nothing more: the calls it may have acted on fail now, not at their deadline.
    if (code !== NO_ERROR) {
      this.fail(new H2Error(`${this.name} ended the connection (${why}); the request may have been processed`, code));
      return;
    }
    this.startQueued();
    if (this.streams.size === 0) this.socket.end();
  }

  private onWindowUpdate(id: number, increment: number): void {
    if (increment === 0) throw new H2Error(`${this.name} sent a WINDOW_UPDATE of 0`, PROTOCOL_ERROR);
    if (id === 0) {
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new H2Error(`${this.name} opened the connection's window beyond 2^31-1`, FLOW_CONTROL_ERROR);
    } else {
      const stream = this.streams.get(id);
      if (stream) stream.sendWindow += increment;
      if (stream && stream.sendWindow > MAX_WINDOW) throw new H2Error(`${this.name} opened stream ${id}'s window beyond 2^31-1`, FLOW_CONTROL_ERROR);
    }
    this.unblock();
  }

  private complete(stream: Stream): void {
    // The server answered before taking the whole body: the stream is closed by resetting it.
    if (stream.sent < stream.body.length) this.rstStream(stream.id, 0);
    const body = stream.chunks.length === 1 ? (stream.chunks[0] as Buffer) : Buffer.concat(stream.chunks);
    this.finish(stream, undefined, { headers: stream.headers ?? [], ...(stream.trailers ? { trailers: stream.trailers } : {}), body });
  }

  private finish(stream: Stream, err: Error | undefined, res?: H2Response): void {
    // Finished already (a callback before this one cancelled it): `done` runs once.
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    stream.done(err, res);
    if (this.draining && this.streams.size === 0) this.socket.end();
    else this.startQueued();
  }

  private fail(err: Error, goAway?: number): void {
    if (this.failure) return;
    if (goAway !== undefined) {
      const payload = Buffer.alloc(8);
      // No stream of the server's was processed: it opens none (push is off).
      payload.writeUInt32BE(0, 0);
      payload.writeUInt32BE(goAway, 4);
      this.frame(Frame.GoAway, 0, 0, payload);
    }
    this.failure = err;
    if (goAway === undefined) this.socket.destroy();
    else {
      // The GOAWAY goes out first; a server that does not close in a second is cut off.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    }
    const streams = [...this.queued.splice(0), ...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const stream of streams) stream.done(err);
  }

  private rstStream(id: number, code: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(code, 0);
    this.frame(Frame.RstStream, 0, id, payload);
  }

  private windowUpdate(id: number, increment: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(increment, 0);
    this.frame(Frame.WindowUpdate, 0, id, payload);
  }

  private frame(type: number, flags: number, id: number, payload?: Buffer): void {
    const length = payload?.length ?? 0;
    // Small payloads travel in the header's buffer: one buffer per frame in the write.
    const inline = length <= 1024;
    const frame = Buffer.allocUnsafe(9 + (inline ? length : 0));
    frame.writeUIntBE(length, 0, 3);
    frame[3] = type;
    frame[4] = flags;
    frame.writeUInt32BE(id, 5);
    if (payload && inline) payload.copy(frame, 9);
    this.write(frame);
    if (payload && !inline) this.write(payload);
  }

  private write(buf: Buffer): void {
    if (this.failure) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(buf);
  }
}

/** A DATA or HEADERS payload without its padding; `reserved` octets (HEADERS' priority) must remain. */
function unpad(flags: number, payload: Buffer, reserved = 0): Buffer {
  const padded = (flags & PADDED) !== 0;
  const pad = padded ? (payload[0] ?? 0) : 0;
  const head = padded ? 1 : 0;
  if (payload.length < head + reserved + pad) throw new H2Error(`a frame of ${payload.length} octets cannot hold its padding of ${pad} octets`, PROTOCOL_ERROR);
  return padded ? payload.subarray(1, payload.length - pad) : payload;
}
