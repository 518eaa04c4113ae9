import type { SnapStore } from './types.js';

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
