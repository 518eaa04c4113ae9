/**
 * Every retry and every deadline of the sidecar, on cockatiel's policies. A frozen etcd member or
 * a black-holed store answers nothing, ever: each wait on one must end by itself, and each retry
 * must back off (with jitter, so that three sidecars retrying the same store do not march in step).
 */
import { ExponentialBackoff, handleWhen, retry, TaskCancelledError, timeout, TimeoutStrategy } from 'cockatiel';

/** A call that did not settle in time; `what` names it for the operator. */
export class DeadlineError extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/**
 * Runs `fn` and rejects with a DeadlineError after `ms` whether or not it honours the signal:
 * a grpc deadline does not bound etcd3's token exchange with auth on, so the caller cannot rely
 * on the callee to give up by itself.
 */
export async function withDeadline<T>(what: string, ms: number, fn: (signal: AbortSignal) => PromiseLike<T>): Promise<T> {
  try {
    // A referenced timer: whoever awaits a deadline expects it to end, even in a process with
    // nothing else to do (a CLI command, a test); cockatiel clears it when fn settles first.
    return await timeout(ms, TimeoutStrategy.Aggressive).execute(({ signal }) => fn(signal));
  } catch (err) {
    if (err instanceof TaskCancelledError) throw new DeadlineError(what, ms);
    throw err;
  }
}

/**
 * Waits for `p` to settle, at most `ms`; never rejects. For waits whose end matters more than their
 * outcome: a stop that flushes what it can, a cancel the other side may never answer.
 */
export async function settleWithin(p: PromiseLike<unknown>, ms: number): Promise<'settled' | 'timed-out'> {
  try {
    await withDeadline('wait', ms, () => p);
    return 'settled';
  } catch (err) {
    return err instanceof DeadlineError ? 'timed-out' : 'settled';
  }
}

export interface RetryOptions {
  /** First delay between attempts. */
  initialDelayMs: number;
  /** Longest delay between attempts. */
  maxDelayMs: number;
  /** Give up after this many attempts (default: never). */
  maxAttempts?: number;
  /** Retry only while this holds for the error (default: always). */
  retryWhile?: (err: Error) => boolean;
  /** Told of each failed attempt before the pause (to log it or show it in /status). */
  onFailure?: (err: Error, attempt: number) => void;
  /** Stops the retries: the pending pause ends and the last error is thrown. */
  signal?: AbortSignal;
}

/** Calls `fn` until it succeeds, with exponential backoff and jitter between attempts. */
export async function retryWithBackoff<T>(fn: (attempt: number) => PromiseLike<T>, o: RetryOptions): Promise<T> {
  let attempt = 0;
  let lastError: Error | undefined;
  const policy = retry(
    handleWhen((err) => !o.signal?.aborted && (o.retryWhile?.(err) ?? true)),
    {
      maxAttempts: o.maxAttempts === undefined ? Number.POSITIVE_INFINITY : Math.max(0, o.maxAttempts - 1),
      backoff: new ExponentialBackoff({ initialDelay: o.initialDelayMs, maxDelay: o.maxDelayMs }),
    },
  )
    // Pauses between attempts last up to maxDelayMs; a stopped sidecar must not linger for them.
    .dangerouslyUnref();
  try {
    return await policy.execute(async () => {
      attempt++;
      try {
        return await fn(attempt);
      } catch (err) {
        lastError = err as Error;
        o.onFailure?.(lastError, attempt);
        throw err;
      }
    }, o.signal);
  } catch (err) {
    // An abort during a pause surfaces as cockatiel's cancellation; the caller wants the real cause.
    if (err instanceof TaskCancelledError && lastError) throw lastError;
    throw err;
  }
}

/** One call's deadline in a DeadlineSweep. */
export interface SweptDeadline {
  readonly at: number;
  readonly what: string;
  readonly expire: (err: DeadlineError) => void;
}

/**
 * The deadlines of many calls of the same length on one timer. withDeadline costs a cockatiel
 * policy, an AbortController and a timer per call; at the thousands of calls a second of a
 * restore's replay that is CPU taken from the replay itself. All deadlines here have the same
 * length, so the order calls start in is the order they expire in: the timer only ever looks at the
 * oldest pending ones. `expire` is called once, for a call still pending `ms` after it started; the
 * caller must then give up on it (cancel the stream) and reject with the error it is handed.
 */
export class DeadlineSweep {
  /** Insertion order = deadline order. */
  private readonly pending = new Set<SweptDeadline>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(readonly ms: number) {
    if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`deadline ${ms} ms is not a positive integer`);
  }

  get size(): number {
    return this.pending.size;
  }

  start(what: string, expire: (err: DeadlineError) => void): SweptDeadline {
    const d = { at: performance.now() + this.ms, what, expire };
    this.pending.add(d);
    // Referenced, as in withDeadline: a call awaited must end even in a process with nothing else to do.
    // During a sweep the sweep itself sets the timer, for the oldest call left.
    if (!this.sweeping) this.timer ??= setTimeout(() => this.sweep(), this.ms);
    return d;
  }

  /** The call settled: its deadline no longer applies. */
  end(d: SweptDeadline): void {
    this.pending.delete(d);
    if (this.pending.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private sweep(): void {
    this.timer = undefined;
    this.sweeping = true;
    const now = performance.now();
    try {
      for (const d of this.pending) {
        if (d.at > now) break;
        this.pending.delete(d);
        d.expire(new DeadlineError(d.what, this.ms));
      }
    } finally {
      this.sweeping = false;
      // Re-armed even when an expiry threw: the deadlines after it must still fire.
      const oldest = this.pending.values().next().value;
      if (oldest) this.timer = setTimeout(() => this.sweep(), Math.max(1, oldest.at - performance.now()));
    }
  }
}
