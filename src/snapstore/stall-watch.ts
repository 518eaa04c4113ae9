import type { Readable } from 'node:stream';

/**
 * Calls `onStall` once when `source` has delivered nothing for `ms` while flowing, that is while its
 * reader waits for bytes: a server frozen mid-body sends neither data nor an error. A source paused
 * by backpressure (a slow reader) is not stalled. Stops watching when the source ends or fails.
 */
export function watchStall(source: Readable, ms: number, onStall: () => void): void {
  let last = Date.now();
  const seen = (): void => {
    last = Date.now();
  };
  const timer = setInterval(
    () => {
      if (source.isPaused()) last = Date.now();
      else if (Date.now() - last > ms) {
        stop();
        onStall();
      }
    },
    Math.max(50, Math.floor(ms / 4)),
  );
  // The watch alone must not keep a process alive.
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    source.off('data', seen);
  };
  source.on('data', seen);
  source.once('end', stop);
  source.once('close', stop);
  source.once('error', stop);
}
