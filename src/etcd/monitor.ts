import type { Logger } from '../logger.js';
import type { EtcdClient } from './client.js';
import { clusterStatus, type ClusterStatus } from './status.js';

/**
 * Probes every member on a fixed rhythm and remembers the latest answer, for metrics and for
 * `/status`. A round never overlaps the previous one and is bounded by two deadlines, so a frozen
 * member slows no round beyond that (seed 001).
 */
export class MemberMonitor {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<ClusterStatus> | undefined;
  private last: ClusterStatus | undefined;
  private knownEndpoints: string[];

  constructor(
    private readonly client: EtcdClient,
    private readonly opts: { periodMs: number; timeoutMs: number; endpoints: string[] },
    private readonly log: Logger,
    private readonly onStatus: (status: ClusterStatus) => void = () => {},
  ) {
    this.knownEndpoints = [...opts.endpoints];
  }

  latest(): ClusterStatus | undefined {
    return this.last;
  }

  /** A fresh round (joining one already running). */
  check(): Promise<ClusterStatus> {
    if (!this.inFlight) {
      this.inFlight = clusterStatus(this.client, this.opts.timeoutMs, this.knownEndpoints)
        .then((status) => {
          this.last = status;
          // Remember every member's client URLs: when the configured endpoints are all down, the
          // next round still knows where the rest of the cluster lives.
          const urls = status.members.flatMap((m) => m.clientURLs);
          this.knownEndpoints = [...new Set([...this.opts.endpoints, ...urls])];
          this.onStatus(status);
          return status;
        })
        .finally(() => {
          this.inFlight = undefined;
        });
    }
    return this.inFlight;
  }

  start(): void {
    const tick = (): void => {
      this.check().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'member health round failed'));
    };
    tick();
    this.timer = setInterval(tick, this.opts.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
