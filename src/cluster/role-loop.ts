import type { Logger } from '../logger.js';
import type { Check, MemberFacts } from './own-member.js';
import { INITIAL_ROLE, nextRole, type Role, type RoleState } from './role.js';

export interface RoleLoopOptions {
  periodMs: number;
  lostAfter: number;
  log: Logger;
}

/**
 * The role loop: one bounded check per period, ticks never overlap, and nothing else is awaited
 * in a tick (starting and stopping the snapshotters, heartbeats and promotions run beside it), so
 * its rhythm holds whatever the store or other members do (seed 001).
 */
export class RoleLoop {
  private state: RoleState = INITIAL_ROLE;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private lastFacts: MemberFacts | undefined;
  private reached = false;
  changes = 0;
  checks = 0;

  constructor(
    private readonly check: () => Promise<Check>,
    private readonly opts: RoleLoopOptions,
    /** Called (synchronously, from the tick) when the role changes; must not block. */
    private readonly onChange: (role: Role, previous: Role, state: RoleState) => void,
    /** Called after every check; must not block. */
    private readonly onCheck: (check: Check) => void = () => {},
  ) {}

  get role(): Role {
    return this.state.role;
  }

  get current(): RoleState {
    return this.state;
  }

  /** What the own member said at the last check that reached it. */
  get facts(): MemberFacts | undefined {
    return this.lastFacts;
  }

  /** Whether the last completed check reached the own member. */
  get etcdUp(): boolean {
    return this.reached;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    let check: Check;
    try {
      check = await this.check();
    } catch (err) {
      check = { result: { kind: 'unconfirmed', reason: (err as Error).message } };
    }
    if (this.stopped) return;
    this.checks++;
    if (check.facts) this.lastFacts = check.facts;
    this.reached = check.facts !== undefined;
    this.apply(check);
    // The next check starts one period after this one started, or at once when it took longer.
    this.timer = setTimeout(() => void this.tick(), Math.max(0, this.opts.periodMs - (Date.now() - started)));
  }

  private apply(check: Check): void {
    const previous = this.state;
    this.state = nextRole(previous, check.result, this.opts.lostAfter);
    try {
      this.onCheck(check);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'role loop: check observer failed');
    }
    if (this.state.role === previous.role) return;
    this.changes++;
    this.opts.log.info({ role: this.state.role, previous: previous.role, reason: this.state.reason }, 'backup role changed');
    try {
      this.onChange(this.state.role, previous.role, this.state);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'role loop: role change handler failed');
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
