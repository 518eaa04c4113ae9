/**
 * A throwaway single-member etcd on loopback, started from a data dir a restore prepared, to replay
 * delta revisions into. Tuned for that job: limits raised so one original revision (a big delete
 * range, a large transaction: anchor bug #963) always fits one transaction, and leases kept alive so
 * the lessor never deletes a key on its own (anchor bugs #1045, #1046).
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { noop } from 'cockatiel';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Etcd3, type ICompare, type IRequestOp } from 'etcd3';
import type { Logger } from '../logger.js';
import { setAuthEnabled } from './bolt-auth.js';
import { KvChannel } from './kv-channel.js';
import { EtcdProcess } from './process.js';
import { dbFileSnapshot, openSnapshotStream } from './snapshot-stream.js';
import type { Readable } from 'node:stream';

export type { TxnCompare, TxnOp } from './kv-channel.js';

const CALL_TIMEOUT_MS = 120_000;

/** Far above anything one revision can hold; etcd accepts it (and warns above 10MiB). */
export const REPLAY_MAX_REQUEST_BYTES = 1 << 30;
export const REPLAY_MAX_TXN_OPS = 10_000_000;
/**
 * The first election is time the whole restore waits: a single member fast-forwards its election
 * ticks at start and then elects itself after a random 1 to electionTicks ticks, so up to one
 * election timeout (5 s cost 3-6 s per restore in bench/results/restore-full.txt).
 *
 * Why a short one is safe here. Nothing else votes: the member is alone, on loopback, and nobody
 * but the restore talks to it, so there is no partition or slow peer for a long timeout to ride
 * out. What the timeout also sets is the grace of the snapshot's leases: on becoming leader etcd
 * gives every lease its TTL (or its checkpointed remaining TTL) plus the election timeout before it
 * may expire, and the lease keeper must renew them all within that. Leases are restored from the
 * full snapshot with their TTL and renewed from then on (keepLeasesAlive, called as soon as the
 * member is elected: a lease listing and one message per lease on one stream, a few milliseconds);
 * leases a delta needs are granted with --restore-lease-ttl. etcd raises a restored lease's TTL to
 * its minimum, 1.5 election timeouts rounded up to a second (2 s here; it was 8 s with 5 s), so the
 * keeper has 1 s plus that (plus a checkpointed remaining TTL, when the source persisted one) for
 * its first renewal, a job of milliseconds, and renews each lease at a third of its TTL after that
 * (LeaseKeeper). If it were ever late, it is seen, not silent: a lease found expired at its first renewal fails
 * the restore, and a revoke moves the revision, which the start check and the replay's response
 * revisions turn into `revision_mismatch`.
 */
const ELECTION_TIMEOUT_MS = 1_000;
/** etcd wants the election timeout to be at least 5 heartbeats. */
const HEARTBEAT_MS = 100;
/** Far above etcd's 2GiB default so a big db never raises the NOSPACE alarm mid-replay. */
const QUOTA_BACKEND_BYTES = 64 * 1024 ** 3;

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface TemporaryEtcdOptions {
  /** Data dir made by `etcdutl snapshot restore` (etcdctl on 3.4) with `name` and `peerURL` of this temporary member. */
  dataDir: string;
  name: string;
  peerPort: number;
  logFile: string;
  log: Logger;
  startTimeoutMs?: number;
  etcdBinary?: string;
  /**
   * Start a copy of a real member's data dir as a one-member cluster (--force-new-cluster): etcd
   * applies every entry its WAL holds as committed, so the db then holds all the member knew.
   */
  forceNewCluster?: boolean;
}

const noFsyncSupport = new Map<string, Promise<boolean>>();

/** Whether this etcd knows --unsafe-no-fsync (3.4.10 on): an unknown flag fails even `--version`. */
export function acceptsNoFsync(etcdBinary: string): Promise<boolean> {
  let known = noFsyncSupport.get(etcdBinary);
  if (!known) {
    known = promisify(execFile)(etcdBinary, ['--unsafe-no-fsync', '--version'], { timeout: 10_000 }).then(
      () => true,
      () => false,
    );
    noFsyncSupport.set(etcdBinary, known);
  }
  return known;
}

/** No replayed key is a lone NUL byte (the sidecar's keys are paths): what tailRead() reads. */
const ABSENT_KEY = Buffer.from([0]);

export class TemporaryEtcdError extends Error {
  override name = 'TemporaryEtcdError';
}

export class TemporaryEtcd {
  private keeper: LeaseKeeper | undefined;

  /** The replay's transactions: etcd's KV service without etcd3's per-call layers (kv-channel.ts). */
  private readonly kv: KvChannel;

  /** Auth was on in the db it started from, and is off while it runs (bolt-auth.ts): turned back on at stop(). */
  private authSuspended = false;
  private stopped: Promise<void> | undefined;

  private constructor(
    readonly process: EtcdProcess,
    readonly client: Etcd3,
    readonly clientURL: string,
    private readonly db: string,
  ) {
    this.kv = new KvChannel(clientURL, { deadlineMs: CALL_TIMEOUT_MS });
  }

  static async start(opts: TemporaryEtcdOptions): Promise<TemporaryEtcd> {
    const clientURL = `http://127.0.0.1:${await freeLoopbackPort()}`;
    const peerURL = `http://127.0.0.1:${opts.peerPort}`;
    const proc = new EtcdProcess({
      name: opts.name,
      dataDir: opts.dataDir,
      listenClientUrls: [clientURL],
      advertiseClientUrls: [clientURL],
      listenPeerUrls: [peerURL],
      initialAdvertisePeerUrls: [peerURL],
      initialCluster: `${opts.name}=${peerURL}`,
      initialClusterState: 'new',
      initialClusterToken: opts.name,
      logFile: opts.logFile,
      extraArgs: [
        `--max-request-bytes=${REPLAY_MAX_REQUEST_BYTES}`,
        `--max-txn-ops=${REPLAY_MAX_TXN_OPS}`,
        `--election-timeout=${ELECTION_TIMEOUT_MS}`,
        `--heartbeat-interval=${HEARTBEAT_MS}`,
        `--quota-backend-bytes=${QUOTA_BACKEND_BYTES}`,
        '--auto-compaction-retention=0',
        // Its db is thrown away: what outlives it is the `snapshot restore` of the db once it stopped
        // (swapIn() fsyncs that), so a crash only loses a scratch dir that is rebuilt anyway.
        ...((await acceptsNoFsync(opts.etcdBinary ?? 'etcd')) ? ['--unsafe-no-fsync'] : []),
        ...(opts.forceNewCluster ? ['--force-new-cluster'] : []),
      ],
      ...(opts.etcdBinary ? { etcdBinary: opts.etcdBinary } : {}),
      // One thread runs Go code: request handlers then run in the order etcd read the requests
      // (but the last of a burst, see restore/replay-window.ts), so a replay's pipelined
      // transactions are proposed in revision order. Measured on 2 cores: with 16 in flight, no
      // transaction refused for arriving early (against most of them with the default), and
      // 3,800 revisions/s against 1,800.
      env: { GOMAXPROCS: '1' },
    });
    const client = new Etcd3({
      hosts: [clientURL],
      grpcOptions: { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 },
      // A retried transaction could apply twice; every failure must surface instead.
      faultHandling: { host: () => noop, global: noop },
      // Every call bounded, so a wedged temporary etcd fails the restore instead of hanging it; one
      // revision can be one huge transaction, hence the generous bound.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
    const db = join(opts.dataDir, 'member', 'snap', 'db');
    const t = new TemporaryEtcd(proc, client, clientURL, db);
    // A copy of a member's data dir (forceNewCluster) applies its WAL at start, which may switch auth
    // itself, so its db's switch is not the last word; it only answers a status read, which auth
    // does not guard. A restored snapshot's fresh WAL holds no such entry: its db's switch is. (No
    // db at all: a new, empty member, as the replay's own tests start.)
    if (!opts.forceNewCluster && existsSync(db)) {
      t.authSuspended = await setAuthEnabled(db, false);
      if (t.authSuspended) opts.log.info({ dataDir: opts.dataDir }, 'the snapshot has auth enabled: off in the temporary etcd, back on in what it leaves');
    }
    proc.start();
    const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
    for (;;) {
      if (!proc.running) {
        const code = await proc.exited();
        // stop() also turns auth back on: the data dir is left as it was given.
        await t.stop().catch(() => {});
        throw new TemporaryEtcdError(`the temporary etcd exited at start (code ${code}); see ${opts.logFile}`);
      }
      try {
        const s = await client.maintenance.status({ deadline: Date.now() + 1_000 });
        if (s.leader !== '0') break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        await t.stop();
        throw new TemporaryEtcdError(`the temporary etcd did not elect itself leader within ${opts.startTimeoutMs ?? 60_000}ms; see ${opts.logFile}`);
      }
      await sleep(50);
    }
    return t;
  }

  async revision(): Promise<number> {
    return Number((await this.client.maintenance.status()).header.revision);
  }

  /**
   * Renews every lease the db holds, from now until stop(): the lessor of this member must never
   * revoke one, because each revoke deletes keys and moves the revision (anchor bugs #1045, #1046).
   * Leases that really expired in the source cluster are in the deltas as delete events.
   */
  async keepLeasesAlive(log: Logger): Promise<LeaseKeeper> {
    const listed = await this.client.leaseClient.leaseLeases();
    this.keeper = new LeaseKeeper(this.client, log);
    await this.keeper.start(listed.leases.map((l) => l.ID));
    return this.keeper;
  }

  /** One transaction; resolves with the revision etcd reports after applying it. */
  async txn(ops: IRequestOp[]): Promise<number> {
    return (await this.kv.txn([], ops)).revision;
  }

  /**
   * `ops` if every compare holds, else nothing (no failure branch: a failed transaction writes
   * nothing and does not move the revision). Resolves with whether it applied and etcd's revision.
   */
  guardedTxn(compare: ICompare[], ops: IRequestOp[]): Promise<{ succeeded: boolean; revision: number }> {
    return this.kv.txn(compare, ops);
  }

  /**
   * A full snapshot of what it holds: how a compaction turns a replayed chain into one. Its
   * `Maintenance.Snapshot` stream while it runs; with auth suspended, its db once stopped and
   * switched back (the stream would carry auth off, and with auth on etcd sends it to root only).
   */
  async openSnapshot(): Promise<Readable> {
    if (!this.authSuspended) return openSnapshotStream(this.client);
    await this.stop();
    return dbFileSnapshot(this.db);
  }

  /** A serializable read of an absent key: answered by this member alone, no raft entry. */
  async tailRead(): Promise<void> {
    await this.kv.countSerializable(ABSENT_KEY);
  }

  /** Stops it (once, however often called) and leaves its db with auth as the snapshot had it. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.keeper?.stop();
      this.kv.close();
      this.client.close();
      await this.process.stop(30_000);
      if (this.authSuspended) await setAuthEnabled(this.db, true);
    })();
    return this.stopped;
  }
}

/** Leases given to keys in deltas get this TTL when they are not in the full snapshot (their real TTL is not in any backup). */
export const DEFAULT_REPLAY_LEASE_TTL_S = 3600;

/**
 * How often the keeper looks for leases due a renewal; also the renewal period before a lease's TTL
 * is known. Restored leases have at least this member's minimum TTL, 1.5 election timeouts rounded
 * up to a second (2 s here): a renewal due at a third of it must go out within a fraction of a second.
 */
const KEEPER_TICK_MS = 250;

/**
 * Keeps a set of leases alive on one stream. Each lease is renewed at a third of the TTL etcd
 * reports for it (every tick until the first answer), so thousands of hour-long leases
 * (Kubernetes events) cost a few messages, not thousands per second competing with the replay; a
 * renewal does not go through raft.
 */
export class LeaseKeeper {
  /** Lease ID -> when it is next due a renewal (ms since epoch). */
  private readonly due = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private stream: Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>> | undefined;
  private failed: Error | undefined;
  private stopped = false;

  constructor(
    private readonly client: Etcd3,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.due.size;
  }

  has(id: string): boolean {
    return this.due.has(id);
  }

  async start(ids: string[]): Promise<void> {
    for (const id of ids) this.due.set(id, 0);
    const stream = await this.client.leaseClient.leaseKeepAlive();
    stream.on('data', (res: { ID: string; TTL: string }) => {
      const ttl = Number(res.TTL);
      if (ttl <= 0) {
        // The lease was gone before its first renewal: its keys were deleted and the revision moved.
        this.fail(new Error(`lease ${res.ID} of the full snapshot expired in the temporary etcd before it could be renewed`));
        return;
      }
      if (this.due.has(res.ID)) this.due.set(res.ID, Date.now() + Math.max(KEEPER_TICK_MS, (ttl * 1000) / 3));
    });
    stream.on('error', (err: Error) => this.fail(err));
    this.stream = stream;
    this.renew();
    this.timer = setInterval(() => this.renew(), KEEPER_TICK_MS);
    this.timer.unref();
  }

  /** Grants (with its own ID) a lease a replayed put needs and keeps it alive. Does not move the revision. */
  async grant(id: string, ttlSeconds: number): Promise<void> {
    if (this.due.has(id)) return;
    await this.client.leaseClient.leaseGrant({ ID: id, TTL: ttlSeconds });
    this.due.set(id, Date.now() + Math.max(KEEPER_TICK_MS, (ttlSeconds * 1000) / 3));
  }

  /** Throws when renewals stopped working: keys could be revoked behind the replay's back. */
  check(): void {
    if (this.failed) throw this.failed;
  }

  private fail(err: Error): void {
    // Closing the client at stop() drops the stream: expected then, and nothing is replayed after.
    if (this.stopped || this.failed) return;
    this.failed = err;
    this.log.error({ err: err.message }, 'lease keepalive of the temporary etcd failed');
  }

  private renew(): void {
    if (!this.stream || this.failed) return;
    const now = Date.now();
    for (const [id, at] of this.due) {
      if (at > now) continue;
      this.stream.write({ ID: id });
      // Until etcd answers, ask again next tick.
      this.due.set(id, now + KEEPER_TICK_MS);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.stream?.end();
    this.stream = undefined;
  }
}
