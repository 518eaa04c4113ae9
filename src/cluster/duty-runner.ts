import type { Logger } from '../logger.js';
import { retryWithBackoff, settleWithin } from '../resilience.js';

const STOP_WAIT_MS = 30_000;
/** A duty that fails to start (etcd not answering yet) is retried within these pauses while the role lasts. */
const START_RETRY_MIN_MS = 1_000;
const START_RETRY_MAX_MS = 30_000;

/** Something the backup leader runs: started when leading, stopped at once when not. */
export interface Duty {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a fresh duty (a new Snapshotter: it resumes from the store's chain) each time the role
 * becomes leader, and stops it as soon as the role is lost. Never awaited by the role loop; a start
 * waits for the previous stop, so two snapshotters of this sidecar never run together. A start that
 * fails (etcd not answering yet) is retried with backoff while the role lasts.
 */
export class DutyRunner<D extends Duty> {
  private active: D | undefined;
  private generation = 0;
  private settled: Promise<void> = Promise.resolve();
  private retries: AbortController | undefined;

  constructor(
    private readonly make: () => D,
    private readonly log: Logger,
    /** Called when a start attempt fails (to show the reason). */
    private readonly failed: (duty: D, err: Error) => void = () => {},
  ) {}

  get current(): D | undefined {
    return this.active;
  }

  lead(): void {
    const gen = ++this.generation;
    this.retries?.abort();
    const retries = new AbortController();
    this.retries = retries;
    this.settled = this.settled.then(() => this.start(gen, retries.signal));
  }

  private async start(gen: number, signal: AbortSignal): Promise<void> {
    const current = (): boolean => gen === this.generation;
    await retryWithBackoff(
      async () => {
        if (!current()) return;
        const duty = this.active ?? this.make();
        this.active = duty;
        try {
          await duty.start();
        } catch (err) {
          if (current()) this.failed(duty, err as Error);
          throw err;
        }
      },
      {
        initialDelayMs: START_RETRY_MIN_MS,
        maxDelayMs: START_RETRY_MAX_MS,
        signal,
        retryWhile: current,
        onFailure: (err) => {
          if (current()) this.log.error({ err: err.message }, 'snapshotter could not start; retrying');
        },
      },
    ).catch(() => {});
  }

  /** Stops the running duty; resolves when it has stopped. */
  stepDown(): Promise<void> {
    this.generation++;
    this.retries?.abort();
    const duty = this.active;
    this.active = undefined;
    if (!duty) return this.settled;
    // Not chained behind a start that hangs on a frozen member: stopping must begin at once.
    const stopping = duty.stop().catch((err: Error) => this.log.error({ err: err.message }, 'snapshotter did not stop cleanly'));
    // A start or stop stuck on a frozen member (a full snapshot stream has no deadline) must not keep this
    // sidecar from leading again forever; the chain tolerates the overlap, never a gap.
    this.settled = settleWithin(Promise.all([this.settled, stopping]), STOP_WAIT_MS).then(() => {});
    return stopping;
  }
}
