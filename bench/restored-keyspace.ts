/**
 * What a restored data dir holds, read by starting etcd on it: its revision, its live key count, a
 * digest of its live keyspace (every key with its value, create and mod revisions, version and
 * lease) and the revision its history was compacted to, so two restores of one chain can be
 * compared key for key. HashKV cannot compare them: it hashes the history from the compacted
 * revision on, and gardener compacts its embedded etcd every 10,000 revisions while it replays.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startRestored } from '../test/helpers/replay.js';

const run = promisify(execFile);

export interface RestoredKeyspace {
  revision: number;
  keys: number;
  /** sha256 over the live keys in key order, hex. */
  digest: string;
  /** -1: never compacted, the whole history since the full snapshot is there. */
  compactRevision: number;
}

/** Keys per range request: the bench's full snapshot has values of 512 KiB. */
const PAGE = 32;

/** `etcdBinary` (its etcdctl beside it) must read both restores' data dirs: gardener's embedded etcd 3.5 marks its own 3.5. */
export async function restoredKeyspace(dir: string, name: string, peerURL: string, etcdBinary: string): Promise<RestoredKeyspace> {
  const { etcd, client } = await startRestored(dir, name, peerURL, etcdBinary);
  try {
    const hash = createHash('sha256');
    let keys = 0;
    let revision = 0;
    for (let from = Buffer.from([0]); ;) {
      const page = await client.kv.range({ key: from, range_end: Buffer.from([0]), limit: PAGE, serializable: true, ...(revision ? { revision } : {}) });
      revision ||= Number(page.header.revision);
      for (const kv of page.kvs) {
        hash.update(`${kv.key.length}:`).update(kv.key).update(`${kv.value.length}:`).update(kv.value);
        hash.update(`${kv.create_revision},${kv.mod_revision},${kv.version},${kv.lease};`);
        keys++;
      }
      const last = page.kvs.at(-1);
      if (!page.more || !last) break;
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
    // etcd3's protos lack Maintenance.HashKV, whose answer carries the compacted revision: etcdctl of the same release asks.
    const endpoint = etcd.spec.listenClientUrls.join(',');
    const { stdout } = await run(join(dirname(etcdBinary), 'etcdctl'), ['endpoint', 'hashkv', '--endpoints', endpoint, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const compactRevision = (JSON.parse(stdout) as { HashKV: { compact_revision?: number } }[])[0]?.HashKV.compact_revision ?? -1;
    return { revision, keys, digest: hash.digest('hex'), compactRevision };
  } finally {
    client.close();
    await etcd.stop();
  }
}
