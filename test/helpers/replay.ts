import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, type IKeyValue } from 'etcd3';
import { snapshotRestore } from '../../src/etcd/etcdctl.js';
import { EtcdProcess, type EtcdMemberSpec } from '../../src/etcd/process.js';
import type { Chain } from '../../src/snapshot/chain.js';
import type { DeltaEvent } from '../../src/snapshot/delta-format.js';
import type { SnapStore } from '../../src/snapstore/types.js';
import { eventually, freePort } from './cluster.js';
import { assertChainEvents, saveFull } from './snapshots.js';

/** A key as etcd reports it, comparable across clusters. */
export interface KeyState {
  key: string;
  value: string;
  createRevision: string;
  modRevision: string;
  version: string;
  /** With `leases: true` only. */
  lease?: string;
}

function state(kvs: IKeyValue[], leases: boolean): KeyState[] {
  return kvs
    .map((kv) => ({
      key: kv.key.toString('hex'),
      value: kv.value.toString('hex'),
      createRevision: kv.create_revision,
      modRevision: kv.mod_revision,
      version: kv.version,
      ...(leases ? { lease: kv.lease } : {}),
    }))
    .sort((a, b) => (a.key < b.key ? -1 : 1));
}

/**
 * Every key of a cluster at a revision (the client must accept large messages:
 * `grpc.max_receive_message_length: -1`); with the lease each key is on when `leases`.
 */
export async function keyspaceAt(client: Etcd3, revision: number, opts: { leases?: boolean } = {}): Promise<KeyState[]> {
  return state((await client.getAll().revision(revision).exec()).kvs, opts.leases ?? false);
}

/** etcd as the only member of a new cluster, serving clients and peers on the given loopback URLs. */
export function loneMember(m: { name: string; dataDir: string; clientURL: string; peerURL: string; token: string; logFile: string }): EtcdMemberSpec {
  return {
    name: m.name,
    dataDir: m.dataDir,
    listenClientUrls: [m.clientURL],
    advertiseClientUrls: [m.clientURL],
    listenPeerUrls: [m.peerURL],
    initialAdvertisePeerUrls: [m.peerURL],
    initialCluster: `${m.name}=${m.peerURL}`,
    initialClusterState: 'new',
    initialClusterToken: m.token,
    logFile: m.logFile,
  };
}

/**
 * The test's own proof that a chain restores: `etcdctl snapshot restore` of the full snapshot, a
 * throwaway etcd on it, each delta revision replayed as one transaction (so revisions stay aligned
 * with the source), then every key compared with the source cluster at the chain's last revision.
 * Leases are not re-attached (this oracle checks keys, values and revisions; the product's restore
 * owns leases). Not the product's restore: a witness for the snapshot tests.
 */
export async function assertChainRestores(store: SnapStore, chain: Chain, source: Etcd3): Promise<void> {
  assert.ok(chain.full && chain.contiguous);
  const events = await assertChainEvents(store, chain);
  const dir = mkdtempSync(join(tmpdir(), 'ebs-replay-'));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const peerURL = `http://127.0.0.1:${peerPort}`;
  const clientURL = `http://127.0.0.1:${clientPort}`;
  const etcd = new EtcdProcess(loneMember({ name: 'replay', dataDir: join(dir, 'data'), clientURL, peerURL, token: 'replay', logFile: join(dir, 'etcd.log') }));
  const client = new Etcd3({ hosts: [clientURL], grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  try {
    const file = join(dir, 'full.db');
    await saveFull(store, chain.full, file);
    // etcdutl where PATH's etcd has one: 3.6 has no etcdctl snapshot restore.
    await snapshotRestore({ file, dataDir: join(dir, 'data'), name: 'replay', initialCluster: `replay=${peerURL}`, initialAdvertisePeerUrls: [peerURL], initialClusterToken: 'replay' });
    etcd.start();
    await eventually('replay etcd up', async () => (await client.maintenance.status().catch(() => undefined)) ?? undefined, 20_000);
    const revisionOf = async (): Promise<number> => Number((await client.maintenance.status()).header.revision);
    assert.equal(await revisionOf(), chain.full.lastRevision, 'the restored full snapshot is not at its recorded revision');
    const byRevision = new Map<number, DeltaEvent[]>();
    for (const ev of events) byRevision.set(ev.kv.modRevision, [...(byRevision.get(ev.kv.modRevision) ?? []), ev]);
    for (const [revision, evs] of byRevision) {
      const ops = evs.map((ev) => (ev.type === 'put' ? client.put(ev.kv.key).value(ev.kv.value) : client.delete().key(ev.kv.key)));
      // A compare that always holds (key "\0" never exists): etcd3 builds transactions from one.
      await client
        .if(Buffer.from([0]), 'Mod', '==', 0)
        .then(...ops)
        .commit();
      assert.equal(await revisionOf(), revision, `replaying revision ${revision}`);
    }
    assert.deepEqual(await keyspaceAt(client, chain.lastRevision), await keyspaceAt(source, chain.lastRevision));
  } finally {
    client.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts etcd (PATH's, or `etcdBinary`) on a restored data dir with the identity the restore was given. */
export async function startRestored(dir: string, name: string, peerURL: string, etcdBinary?: string): Promise<{ etcd: EtcdProcess; client: Etcd3; clientURL: string }> {
  const clientURL = `http://127.0.0.1:${await freePort()}`;
  const etcd = new EtcdProcess({
    ...loneMember({ name, dataDir: join(dir, 'data'), clientURL, peerURL, token: 'restored', logFile: join(dir, 'etcd.log') }),
    // The restored leases get this long on promotion before the first can expire (and move the
    // revision), as they would in the restored cluster: room for the checks that read them.
    extraArgs: ['--election-timeout=5000', '--heartbeat-interval=100'],
    ...(etcdBinary ? { etcdBinary } : {}),
  });
  etcd.start();
  const client = new Etcd3({ hosts: [clientURL], grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  // Up once it answers: a member with auth on answers a call without credentials with a refusal.
  const answered = (err: Error): true | undefined => (/user name is empty|permission denied/.test(err.message) ? true : undefined);
  await eventually('restored etcd up', async () => (await client.maintenance.status().catch(answered)) ?? undefined, 30_000);
  return { etcd, client, clientURL };
}
