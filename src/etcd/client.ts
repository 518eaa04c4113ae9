import { readFileSync } from 'node:fs';
import { BrokenCircuitError, EventEmitter, ExponentialBackoff, handleWhen, noop, retry, type IFailureEvent, type IPolicy, type ISuccessEvent } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import { invalidateAuthToken, replaceHosts, watchBackoff } from './etcd3-internals.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { rotationFromMembers, toMember, type Member } from './members.js';

/** A client bound to one member (see EtcdClient.member); the rest of the sidecar never names etcd3's types. */
export type EtcdMember = Etcd3;

/** How the sidecar reaches etcd; built once from the config (see `etcdAccessFromConfig`). */
export interface EtcdAccess {
  endpoints: string[];
  /** Deadline of each attempt of a unary call; 0 disables. */
  callTimeoutMs: number;
  keepAliveTimeMs: number;
  keepAliveTimeoutMs: number;
  permitWithoutStream: boolean;
  /** 0 disables auto-sync: the rotation stays as configured. */
  autoSyncIntervalMs: number;
  auth?: { username: string; password: string };
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

export function etcdAccessFromConfig(config: Config): EtcdAccess {
  const access: EtcdAccess = {
    endpoints: config.endpoints,
    callTimeoutMs: config.etcdCallTimeout,
    keepAliveTimeMs: config.dialKeepAliveTime,
    keepAliveTimeoutMs: config.dialKeepAliveTimeout,
    permitWithoutStream: config.permitWithoutStream,
    autoSyncIntervalMs: config.autoSyncInterval,
  };
  if (config.etcdUsername !== '') {
    const password = config.etcdPasswordFile !== '' ? readFileSync(config.etcdPasswordFile, 'utf8').trim() : config.etcdPassword;
    access.auth = { username: config.etcdUsername, password };
  }
  if (config.etcdCacert !== '') {
    access.tls = { ca: readFileSync(config.etcdCacert) };
    if (config.etcdCert !== '') {
      access.tls.cert = readFileSync(config.etcdCert);
      access.tls.key = readFileSync(config.etcdKey);
    }
  }
  return access;
}

/**
 * A member that failed one attempt is skipped for this long before it is tried again. One failure
 * is enough: the failure that matters is a frozen member, and each attempt on it costs a whole
 * deadline (etcd3's default breaker needs three, i.e. three deadlines, seed 000).
 */
const MEMBER_COOLDOWN_MS = 3_000;

/**
 * Skips a member for MEMBER_COOLDOWN_MS after a recoverable failure, and never makes a call wait for
 * another one. cockatiel's circuit breaker cannot be used here: in its half-open state every call
 * waits for the probe call, and etcd3 1.1.2 answers an "invalid auth token" (any member restart with
 * auth on) by re-running the call from inside the probe, through the same breaker: the probe waits
 * on itself and the call hangs forever, whatever its deadline (reproduced against etcd 3.4 in
 * test/snapshot/snapshots.e2e.test.ts, the auth restart test; microsoft/etcd3#177).
 */
export class MemberCooldown implements IPolicy {
  declare readonly _altReturn: never;
  private readonly successes = new EventEmitter<ISuccessEvent>();
  private readonly failures = new EventEmitter<IFailureEvent>();
  readonly onSuccess = this.successes.addListener;
  readonly onFailure = this.failures.addListener;
  private skipUntil = 0;

  constructor(
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal: AbortSignal = new AbortController().signal): Promise<T> {
    if (this.now() < this.skipUntil) throw new BrokenCircuitError();
    const started = this.now();
    try {
      const value = await fn({ signal });
      this.skipUntil = 0;
      this.successes.emit({ duration: this.now() - started });
      return value;
    } catch (err) {
      if (isRecoverableError(err as Error)) {
        this.skipUntil = this.now() + this.cooldownMs;
        this.failures.emit({ duration: this.now() - started, handled: true, reason: { error: err as Error } });
      }
      throw err;
    }
  }
}

/** A cancelled watch is re-opened within this backoff (etcd3's default waits up to 30 s, far too long for a delta snapshotter). */
const WATCH_REOPEN_MIN_MS = 200;
const WATCH_REOPEN_MAX_MS = 5_000;

/**
 * The one way the sidecar talks to etcd. `etcd` balances over the rotation (started voting members);
 * `member(url)` is a client bound to exactly one member with no retries, for questions that concern
 * that member (its status, its snapshot) and must fail fast when it is frozen.
 */
export class EtcdClient {
  readonly etcd: Etcd3;
  private readonly options: IOptions;
  private readonly memberClients = new Map<string, Etcd3>();
  private rotation: string[];
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<string[]> | undefined;
  private closed = false;

  constructor(
    readonly access: EtcdAccess,
    private readonly log: Logger,
  ) {
    if (access.endpoints.length === 0) throw new Error('etcd client: no endpoints configured');
    this.rotation = [...access.endpoints];
    this.options = this.clientOptions(this.rotation, true);
    this.etcd = new Etcd3(this.options);
  }

  /**
   * Deadline of a question asked of each member (status, member list). It has one even when
   * --etcd-call-timeout=0 disables the per-attempt deadline: a fan-out must never wait on a frozen member.
   */
  get memberTimeoutMs(): number {
    return this.access.callTimeoutMs || 5_000;
  }

  /** The client URLs calls are currently balanced over. */
  endpoints(): string[] {
    return [...this.rotation];
  }

  private grpcOptions(): NonNullable<IOptions['grpcOptions']> {
    const a = this.access;
    return {
      'grpc.keepalive_time_ms': a.keepAliveTimeMs > 0 ? a.keepAliveTimeMs : -1,
      'grpc.keepalive_timeout_ms': a.keepAliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': a.permitWithoutStream ? 1 : 0,
      // A thawed or restarted member is reconnected within a second or so, not grpc's 120 s cap.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5_000,
      // Range responses of large keyspaces exceed grpc's 4 MiB default; etcd bounds them itself.
      'grpc.max_receive_message_length': -1,
      // HTTP/2's default 64 KiB receive window makes etcd wait for a window update every two
      // snapshot messages; 1 MiB took a 385 MB snapshot from 4.2 s to 3.1 s here (bench/snapshot.ts).
      'grpc-node.flow_control_window': 1 << 20,
    };
  }

  private clientOptions(hosts: string[], balanced: boolean): IOptions {
    const timeout = this.access.callTimeoutMs;
    const options: IOptions = {
      hosts,
      grpcOptions: this.grpcOptions(),
      // Per attempt, not per call: etcd3 evaluates this before each try, so a retry on the next
      // member gets a fresh deadline. Streams (watch, snapshot) must not have one.
      defaultCallOptions: (ctx) => (ctx.isStream || timeout === 0 ? {} : { deadline: Date.now() + timeout }),
      faultHandling: balanced
        ? {
            host: () => new MemberCooldown(MEMBER_COOLDOWN_MS),
            global: retry(handleWhen(isRecoverableError), { maxAttempts: 3, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }) }),
            watchBackoff: watchBackoff(WATCH_REOPEN_MIN_MS, WATCH_REOPEN_MAX_MS),
          }
        : { host: () => noop, global: noop, watchBackoff: watchBackoff(WATCH_REOPEN_MIN_MS, WATCH_REOPEN_MAX_MS) },
    };
    if (this.access.auth) options.auth = { ...this.access.auth };
    if (this.access.tls) {
      options.credentials = { rootCertificate: this.access.tls.ca };
      if (this.access.tls.cert) options.credentials.certChain = this.access.tls.cert;
      if (this.access.tls.key) options.credentials.privateKey = this.access.tls.key;
    }
    return options;
  }

  /** A client bound to one member, without retries or failover; cached per URL. */
  member(url: string): EtcdMember {
    let client = this.memberClients.get(url);
    if (!client) {
      if (this.closed) throw new Error('etcd client is closed');
      client = new Etcd3(this.clientOptions([url], false));
      this.memberClients.set(url, client);
    }
    return client;
  }

  /** The member list, asked of every given endpoint at once; the first answer wins. */
  async listMembers(endpoints: readonly string[] = this.rotation, timeoutMs = this.memberTimeoutMs): Promise<Member[]> {
    const attempts = endpoints.map((url) => this.member(url).cluster.memberList({ linearizable: false }, { deadline: Date.now() + timeoutMs }));
    try {
      const res = await Promise.any(attempts);
      return res.members.map(toMember);
    } catch (err) {
      const causes = err instanceof AggregateError ? err.errors.map((e: unknown) => (e as Error).message) : [(err as Error).message];
      throw new Error(`member list: no endpoint answered (${[...new Set(causes)].join('; ')})`, { cause: err });
    }
  }

  /**
   * One auto-sync round: ask for the member list and balance over started voting members only.
   * Never empties the rotation: when nothing qualifies, the current one is kept.
   */
  async syncEndpoints(): Promise<string[]> {
    if (this.syncing) return this.syncing;
    this.syncing = (async () => {
      try {
        const members = await this.listMembers([...new Set([...this.rotation, ...this.access.endpoints])]);
        const next = rotationFromMembers(members);
        if (next.length === 0) {
          this.log.warn({ members }, 'auto-sync: no started voting member in the member list; keeping the current endpoints');
        } else if (next.join(',') !== this.rotation.join(',')) {
          this.log.info({ from: this.rotation, to: next }, 'auto-sync: endpoint rotation changed');
          this.applyRotation(next);
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'auto-sync: member list failed; keeping the current endpoints');
      }
      return this.endpoints();
    })().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private applyRotation(next: string[]): void {
    replaceHosts(this.etcd, next, this.options.faultHandling?.host);
    // The authenticator reads the hosts from the options object; keep it on live members too.
    this.options.hosts = next;
    this.rotation = next;
  }

  /** Runs the first sync now (bounded by one deadline per endpoint) and then every interval. */
  async startAutoSync(): Promise<void> {
    if (this.access.autoSyncIntervalMs === 0) return;
    await this.syncEndpoints();
    if (this.closed) return;
    this.syncTimer = setInterval(() => void this.syncEndpoints(), this.access.autoSyncIntervalMs);
    this.syncTimer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.etcd.close();
    for (const c of this.memberClients.values()) c.close();
    this.memberClients.clear();
  }
}

/**
 * Makes the next call authenticate again. A simple token dies with the member that issued it (a
 * restart) or after --auth-token-ttl without use; etcd3 renews it for unary calls but keeps
 * reopening watches with the dead one (seed 002), so every reopened watch (and every snapshot
 * stream, which etcd3 opens with its cached token too) starts from a fresh token.
 */
export function forgetAuthToken(member: Etcd3): void {
  invalidateAuthToken(member);
}

/** The client factory: builds the client and, unless disabled, syncs its rotation before returning. */
export async function createEtcdClient(access: EtcdAccess, log: Logger): Promise<EtcdClient> {
  const client = new EtcdClient(access, log);
  await client.startAutoSync();
  return client;
}
