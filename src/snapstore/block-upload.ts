import { createHash } from 'node:crypto';

export interface BlockUploadOptions {
  partSize: number;
  /** Blocks in flight at once; memory stays near (concurrency + 1) x partSize. */
  concurrency: number;
  /** Sends one block with the md5 of its bytes; rejects when the store refused it. */
  stage(index: number, block: Buffer, md5: Buffer): Promise<void>;
  signal?: AbortSignal;
}

/** The body when it fit in one part (one request stores it), else the count of blocks staged, in order. */
export type BlockUploadResult = { whole: Buffer } | { blocks: number };

/**
 * Cuts a stream into blocks of `partSize` and stages them, `concurrency` at a time; reading waits
 * while that many are in flight, so a fast source cannot fill memory. A body smaller than one part
 * is handed back whole instead: one request then stores it. The first refused block stops the
 * upload (the source is destroyed) and its error is thrown.
 */
export async function uploadBlocks(body: AsyncIterable<Buffer>, o: BlockUploadOptions): Promise<BlockUploadResult> {
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let index = 0;

  const send = async (block: Buffer): Promise<void> => {
    const md5 = createHash('md5').update(block).digest();
    const p: Promise<void> = o.stage(index++, block, md5).then(
      () => void inFlight.delete(p),
      (err: unknown) => {
        failure ??= err as Error;
        inFlight.delete(p);
      },
    );
    inFlight.add(p);
    while (inFlight.size >= o.concurrency && failure === undefined) await Promise.race(inFlight);
  };
  const check = (): void => {
    if (failure !== undefined) throw failure;
    o.signal?.throwIfAborted();
  };

  try {
    for await (const chunk of body) {
      check();
      pending.push(chunk);
      pendingBytes += chunk.length;
      while (pendingBytes >= o.partSize) {
        const all = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
        const rest = all.subarray(o.partSize);
        pending = rest.length > 0 ? [rest] : [];
        pendingBytes = rest.length;
        await send(all.subarray(0, o.partSize));
        check();
      }
    }
    const last = Buffer.concat(pending, pendingBytes);
    if (index === 0) return { whole: last };
    if (last.length > 0) await send(last);
    await Promise.all(inFlight);
    check();
    return { blocks: index };
  } finally {
    // Blocks still in flight when the upload failed: let them settle, so none outlives the call.
    await Promise.allSettled(inFlight);
  }
}
