// How old each heartbeat is, by the reader's own monotonic clock: the time since this reader last
// saw the heartbeat change. The `time` a writer stamps into its heartbeat is its own wall clock; a
// host running a minute behind would otherwise look dead to everyone (two backup leaders) and one
// running ahead would look alive after it died. Only the fact that the stamp changed is used here,
// never its value, so skew between hosts changes nothing.

import type { Heartbeat } from './heartbeat-format.js';

/** A heartbeat with its age as this reader judges it. */
export type SeenHeartbeat = Heartbeat & { ageMs: number };

export class HeartbeatAges {
  private readonly seen = new Map<string, { stamp: string; atMs: number }>();

  constructor(private readonly nowMs: () => number = () => performance.now()) {}

  /**
   * Records one read of the heartbeats and returns them with their ages. A heartbeat seen for the
   * first time counts as just written: the reader cannot tell its age yet, and taking a dead member
   * for alive costs one TTL of waiting, while taking a live one for dead could start a second
   * cluster or a second backup leader.
   */
  observe(heartbeats: readonly Heartbeat[]): SeenHeartbeat[] {
    const now = this.nowMs();
    return heartbeats.map((hb) => {
      const before = this.seen.get(hb.name);
      const stamp = `${hb.time}|${hb.etcdUp}|${hb.role}`;
      if (!before || before.stamp !== stamp) this.seen.set(hb.name, { stamp, atMs: now });
      return { ...hb, ageMs: now - (this.seen.get(hb.name) as { atMs: number }).atMs };
    });
  }

  /** The age of a heartbeat observed before, by name; undefined when never seen. */
  ageMs(name: string): number | undefined {
    const s = this.seen.get(name);
    return s ? this.nowMs() - s.atMs : undefined;
  }
}
