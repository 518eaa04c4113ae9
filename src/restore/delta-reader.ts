/**
 * One delta read as a stream of events: stored bytes -> decompression -> DeltaDecoder, pulled by
 * the replay, so no more than a chunk of JSON and one event are decoded ahead of it.
 *
 * The payload's sha256 trailer comes last, so events are handed out before it is checked: the
 * replay applies them to a temporary etcd that is thrown away unless `finish()` checks out. When
 * applying them failed (a revision gap, an unexpected revision), `explain()` reads the rest of the
 * delta, because a damaged payload is the better explanation of either.
 */
import { pipeline, Readable } from 'node:stream';
import { decompressStream } from '../snapshot/compression.js';
import { DeltaDecoder } from '../snapshot/delta-decoder.js';
import { DeltaFormatError, type DeltaEvent } from '../snapshot/delta-format.js';
import type { SnapshotRef } from '../snapshot/names.js';
import { StoreError } from '../snapstore/types.js';
import { RestoreError } from './plan.js';

/** A store or stream failure while reading `name`, as the restore reports it. */
export function readFailure(name: string, err: unknown): RestoreError {
  if (err instanceof RestoreError) return err;
  if (err instanceof StoreError && err.code === 'aborted') return new RestoreError('aborted', `reading ${name}: aborted`, { cause: err });
  if (err instanceof StoreError && err.code !== 'checksum_mismatch' && err.code !== 'not_found') return new RestoreError('store_failed', `reading ${name}: ${err.message}`, { cause: err });
  if (err instanceof StoreError && err.code === 'not_found') return new RestoreError('gap', `${name} is listed but cannot be read: ${err.message}`, { cause: err });
  if ((err as Error).name === 'AbortError') return new RestoreError('aborted', `reading ${name}: aborted`, { cause: err });
  if (err instanceof DeltaFormatError) return new RestoreError('corrupt', `${name} is damaged: ${err.message}`, { cause: err });
  return new RestoreError('corrupt', `${name} is damaged: ${(err as Error).message}`, { cause: err });
}

/** Errors a damaged payload can cause in the replay; others (etcd down, an abort) stand on their own. */
const EXPLAINABLE = new Set(['gap', 'corrupt', 'revision_mismatch']);

/**
 * JSON bytes decoded ahead of the replay. The replay waits on etcd most of the time; decoding in
 * those waits rather than between them keeps decoding off the replay's critical path, and this
 * bound (about 4x that in heap, once decoded) keeps it from growing with the delta.
 */
export const DECODE_AHEAD_BYTES = 4 * 1024 * 1024;

/** Events decoded from one chunk, and the JSON bytes they count for against the bound. */
interface Decoded {
  events: DeltaEvent[];
  at: number;
  bytes: number;
}

export class DeltaReader {
  private readonly decoder = new DeltaDecoder();
  private readonly inflated: Readable;
  private readonly chunks: AsyncIterator<Buffer>;
  /** The outcome of the trailer check, once made: undefined while open, null when it passed. */
  private verdict: RestoreError | null | undefined;
  private closed = false;
  private readonly ready: Decoded[] = [];
  private readyBytes = 0;
  /** Events are no longer wanted: the pump only hashes what is left. */
  private skipping = false;
  private readonly pumped: Promise<void>;
  private pumpDone = false;
  private wakeReader: (() => void) | undefined;
  private wakePump: (() => void) | undefined;

  constructor(
    readonly ref: SnapshotRef,
    stored: AsyncIterable<Buffer> | Readable,
    private readonly onClose: () => void = () => {},
    private readonly aheadBytes = DECODE_AHEAD_BYTES,
  ) {
    const source = stored instanceof Readable ? stored : Readable.from(stored, { objectMode: false });
    // pipeline() destroys both on an error or a close, so an abandoned delta holds no socket.
    this.inflated = pipeline(source, decompressStream(ref.compression), () => {});
    this.chunks = this.inflated[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    this.pumped = this.pump();
  }

  /** The delta's events in order; ends by checking the trailer (RestoreError 'corrupt' if it fails). */
  async *events(): AsyncGenerator<DeltaEvent> {
    for (;;) {
      const head = this.ready[0];
      if (head && head.at < head.events.length) {
        yield head.events[head.at++] as DeltaEvent;
      } else if (head) {
        this.ready.shift();
        this.readyBytes -= head.bytes;
        this.poke('pump');
      } else if (this.pumpDone) {
        if (this.verdict) throw this.verdict;
        return;
      } else {
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
      }
    }
  }

  /** Reads what is left without decoding it and checks the trailer: call after stopping early. */
  async finish(): Promise<void> {
    this.skip();
    await this.pumped;
    if (this.verdict) throw this.verdict;
  }

  /** The error to report for `err`, raised while this delta's events were applied. */
  async explain(err: unknown): Promise<unknown> {
    if (!(err instanceof RestoreError) || !EXPLAINABLE.has(err.code) || this.verdict === null) return err;
    try {
      await this.finish();
    } catch (damage) {
      if (damage instanceof RestoreError && damage.code === 'corrupt' && damage !== err) return damage;
    }
    return err;
  }

  /** Lets go of the stored bytes and the stream; safe to call more than once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.skip();
    this.inflated.destroy();
    this.onClose();
  }

  private skip(): void {
    if (this.skipping) return;
    this.skipping = true;
    this.decoder.skipRest();
    this.ready.length = 0;
    this.readyBytes = 0;
    this.poke('pump');
  }

  /** Decodes ahead of the reader, up to `aheadBytes`; ends with the trailer's verdict. */
  private async pump(): Promise<void> {
    try {
      for (let chunk = await this.next(); chunk; chunk = await this.next()) {
        const events = this.decoder.write(chunk);
        if (this.skipping) continue;
        this.ready.push({ events, at: 0, bytes: chunk.length });
        this.readyBytes += chunk.length;
        this.poke('reader');
        while (this.readyBytes >= this.aheadBytes && !this.skipping) await new Promise<void>((resolve) => (this.wakePump = resolve));
      }
      this.decoder.end();
      this.verdict = null;
    } catch (err) {
      // A stream torn down by close() is no verdict on the delta.
      if (!this.closed) this.verdict = readFailure(this.ref.name, err);
    } finally {
      this.pumpDone = true;
      this.poke('reader');
    }
  }

  private poke(who: 'reader' | 'pump'): void {
    const wake = who === 'reader' ? this.wakeReader : this.wakePump;
    if (who === 'reader') this.wakeReader = undefined;
    else this.wakePump = undefined;
    wake?.();
  }

  private async next(): Promise<Buffer | undefined> {
    const r = await this.chunks.next();
    return r.done ? undefined : r.value;
  }
}

/** Every event of one delta, checked: for callers that want a whole (small) delta. */
export async function readAllEvents(reader: DeltaReader): Promise<DeltaEvent[]> {
  const out: DeltaEvent[] = [];
  try {
    for await (const ev of reader.events()) out.push(ev);
  } finally {
    reader.close();
  }
  return out;
}
