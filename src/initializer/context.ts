/**
 * What the initializer's parts share: its dependencies, its status, and the context an action runs
 * in (the status it reports progress to, the signal that stops it).
 */
import type { Config } from '../config/index.js';
import type { EtcdClient } from '../etcd/client.js';
import type { HeartbeatWriter } from '../cluster/heartbeat.js';
import type { HeartbeatAges } from '../cluster/heartbeat-ages.js';
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/index.js';
import type { Decision } from './decide.js';

export type InitState = 'New' | 'Progress' | 'Successful' | 'Failed';

export interface InitStatus {
  state: InitState;
  decision?: Decision;
  reason?: string;
  progress?: string;
  error?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Rounds of fact gathering so far (a waiting member counts up). */
  rounds: number;
  /**
   * Counts initializations: a launcher running etcd (`run-etcd`) stops it and starts it again with
   * the new config when this changes (the sidecar began initializing again).
   */
  generation: number;
  /** Set while this member's etcd must stop before initialization goes on: the launcher (run-etcd) stops it. */
  stopEtcd?: boolean;
}

export interface InitializerDeps {
  config: Config;
  etcd: EtcdClient;
  store: SnapStore;
  log: Logger;
  /** This member's heartbeat: the others read its waiting report from it, and a restore resets what it carries. */
  heartbeat?: Pick<HeartbeatWriter, 'waiting' | 'writeNow' | 'remember'>;
  /** Judges heartbeat freshness by this process's clock (shared with the election). */
  ages: HeartbeatAges;
  sleep?: (ms: number) => Promise<void>;
}

export class InitializationError extends Error {}

/** What an action needs besides its arguments. */
export interface ActionContext {
  deps: InitializerDeps;
  /** Reports progress in the initializer's status. */
  update(patch: Partial<InitStatus>): void;
  signal: AbortSignal;
}
