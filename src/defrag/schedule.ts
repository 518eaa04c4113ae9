import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../logger.js';
import { DefragBusyError, DefragRefusedError } from './defragmenter.js';

/**
 * Runs a defragmentation round on the cron schedule when this sidecar is the backup leader: one
 * sidecar of the cluster defragments, so rounds of two sidecars never make two members busy.
 */
export class DefragSchedule {
  private task: ScheduledTask | undefined;

  constructor(
    private readonly schedule: string,
    private readonly leads: () => boolean,
    private readonly round: (reason: string) => Promise<unknown>,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.schedule === 'off' || this.task) return;
    this.task = cron.schedule(this.schedule, () => void this.tick(), { name: 'defragmentation' });
  }

  private async tick(): Promise<void> {
    if (!this.leads()) return;
    try {
      await this.round('schedule');
    } catch (err) {
      // A refused round (a member down, no quorum to spare) waits for the next tick; so does a busy one.
      const expected = err instanceof DefragRefusedError || err instanceof DefragBusyError;
      this.log[expected ? 'warn' : 'error']({ err: (err as Error).message }, 'scheduled defragmentation did not run');
    }
  }

  async stop(): Promise<void> {
    await this.task?.destroy();
    this.task = undefined;
  }
}
