import { randomBytes } from 'node:crypto';
import { StoreError, type SnapStore } from './types.js';

export interface StoreHealth {
  url: string;
  healthy: boolean;
  latencyMs: number;
  error?: string;
  checkedAt: string;
}

/**
 * Asks the store for one listed object on a fixed rhythm and keeps the last answer, so `/status`
 * can show store health at once even when the store is a black hole (a probe may take up to
 * --store-timeout x attempts; nobody waits on it).
 */
export class StoreProbe {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private last: StoreHealth | undefined;

  constructor(
    private readonly store: SnapStore,
    private readonly periodMs: number,
  ) {}

  latest(): StoreHealth | undefined {
    return this.last;
  }

  async check(): Promise<StoreHealth> {
    const started = performance.now();
    const checkedAt = new Date().toISOString();
    try {
      await this.store.list('', { pageSize: 1 });
      this.last = { url: this.store.url, healthy: true, latencyMs: Math.round(performance.now() - started), checkedAt };
    } catch (err) {
      this.last = { url: this.store.url, healthy: false, latencyMs: Math.round(performance.now() - started), error: (err as Error).message, checkedAt };
    }
    return this.last;
  }

  start(): void {
    const tick = (): void => {
      if (this.running) return;
      this.running = true;
      void this.check().finally(() => (this.running = false));
    };
    tick();
    this.timer = setInterval(tick, this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

export type ConditionalWriteProbe = { ok: true } | { ok: false; reason: string };

/**
 * Whether the store really enforces `putIfVersion`'s conditions. Some S3 clones accept If-Match and
 * If-None-Match and ignore them, which would let two members both win a claim: this writes a probe
 * object under `prefix` (a fresh name each time), creates it twice, updates it with its current and
 * with a stale version, checks which calls lost, and deletes it.
 */
export async function probeConditionalWrites(store: SnapStore, prefix = 'probe/'): Promise<ConditionalWriteProbe> {
  const name = `${prefix}conditional-write-${Date.now()}-${randomBytes(6).toString('hex')}`;
  const body = (step: string): Buffer => Buffer.from(JSON.stringify({ probe: name, step }));
  /** Undefined when the call lost with precondition_failed, as it must; otherwise why not. */
  const mustLose = async (p: Promise<string>, what: string): Promise<string | undefined> => {
    try {
      await p;
    } catch (err) {
      if (err instanceof StoreError && err.code === 'precondition_failed') return undefined;
      return `${what} failed with something other than precondition_failed: ${(err as Error).message}`;
    }
    return `${what} succeeded: the store ignores the condition and overwrote the object`;
  };
  let created = false;
  try {
    let first: string;
    try {
      first = await store.putIfVersion(name, body('create'), undefined);
      created = true;
    } catch (err) {
      return { ok: false, reason: `creating ${name} if absent failed: ${(err as Error).message}` };
    }
    const again = await mustLose(store.putIfVersion(name, body('create again'), undefined), 'a second create-if-absent (If-None-Match: *)');
    if (again) return { ok: false, reason: again };
    let second: string;
    try {
      second = await store.putIfVersion(name, body('update'), first);
    } catch (err) {
      return { ok: false, reason: `an update with the current version failed: ${(err as Error).message}` };
    }
    if (second === first) return { ok: false, reason: `an update left the version at ${first}: versions cannot tell writes apart` };
    const stale = await mustLose(store.putIfVersion(name, body('stale update'), first), 'an update with a stale version (If-Match)');
    if (stale) return { ok: false, reason: stale };
    const read = await store.readVersioned(name);
    if (!read || read.version !== second || !read.body.equals(body('update'))) {
      return { ok: false, reason: `reading back gave ${read ? `version ${read.version}, ${read.body.length} bytes` : 'nothing'}, expected version ${second} and the update's body` };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `probing ${name}: ${(err as Error).message}` };
  } finally {
    if (created) await store.delete(name).catch(() => {});
  }
}
