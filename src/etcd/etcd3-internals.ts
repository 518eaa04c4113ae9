/**
 * Every reach into etcd3 1.1.2's internals, in one place. package.json pins etcd3 to exactly that
 * version because of this file: each cast below names the private shape it relies on and why no
 * public API does the job. Nothing outside this file casts an etcd3 object.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { Readable } from 'node:stream';
import { ExponentialBackoff, type IBackoff } from 'cockatiel';
import type { Etcd3 } from 'etcd3';
import { Host } from 'etcd3/lib/connection-pool.js';

interface MaintenanceService {
  snapshot(request: object, metadata: Metadata, options: object): Readable;
}

/** The parts of etcd3's ConnectionPool used here. */
interface PoolInternals {
  hosts: Host[];
  authenticator: { invalidateMetadata(): void };
  withConnection<T>(service: 'Maintenance', fn: (conn: { client: MaintenanceService; metadata: Metadata }) => T | Promise<T>): Promise<T>;
}

interface HostInternals {
  host: string;
  channelCredentials: ConstructorParameters<typeof Host>[1];
  channelOptions: ConstructorParameters<typeof Host>[2];
}

function poolOf(etcd: Etcd3): PoolInternals {
  return (etcd as unknown as { pool: PoolInternals }).pool;
}

function stripScheme(url: string): string {
  return url.replace(/^https?:\/\//, '');
}

/**
 * Points a client at other members in place. etcd3 has no API to change its hosts after
 * construction; the pool copies `hosts` at the start of every call, so swapping the array between
 * calls is safe. Hosts kept from the current list keep their connections; the dropped ones close.
 * `options.hosts` is the object the authenticator reads the hosts from: the caller updates it too.
 */
export function replaceHosts(etcd: Etcd3, next: readonly string[], hostPolicy: ((host: string) => ConstructorParameters<typeof Host>[3]) | undefined): void {
  const pool = poolOf(etcd);
  const current = new Map(pool.hosts.map((h) => [(h as unknown as HostInternals).host, h]));
  const template = pool.hosts[0] as unknown as HostInternals;
  pool.hosts = next.map((url) => {
    const existing = current.get(stripScheme(url));
    if (existing) {
      current.delete(stripScheme(url));
      return existing;
    }
    return new Host(url, template.channelCredentials, template.channelOptions, hostPolicy?.(url));
  });
  for (const removed of current.values()) removed.close();
}

/**
 * Makes the next call authenticate again. etcd3 renews a dead token for unary calls but keeps
 * reopening watches (and opening snapshot streams) with the cached one; there is no public way
 * to drop it.
 */
export function invalidateAuthToken(etcd: Etcd3): void {
  poolOf(etcd).authenticator.invalidateMetadata();
}

/**
 * The raw `Maintenance.Snapshot` response stream. etcd3's own `maintenance.snapshot()` passes the
 * auth metadata in the request's place, so a cluster with auth enabled refuses it; the pool's
 * connection gives the right metadata.
 */
export function openMaintenanceSnapshot(etcd: Etcd3): Promise<Readable> {
  return poolOf(etcd).withConnection('Maintenance', ({ client, metadata }) => client.snapshot({}, metadata, {}));
}

/**
 * The backoff of a re-opened watch. etcd3 1.1.2 types the option as an IBackoff but calls `.next()`
 * on it, i.e. it wants a backoff factory like its own default.
 */
export function watchBackoff(initialDelay: number, maxDelay: number): IBackoff<unknown> {
  return new ExponentialBackoff({ initialDelay, maxDelay }) as unknown as IBackoff<unknown>;
}
