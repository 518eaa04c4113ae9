/**
 * What a restored data dir holds, read by starting etcd on it: its revision, its live key count and
 * etcd's HashKV (a hash over every stored revision of every key, values and versions included), so
 * two restores of one chain can be compared key for key without reading the keyspace out.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startRestored } from '../test/helpers/replay.js';

const run = promisify(execFile);

export interface RestoredKeyspace {
  revision: number;
  keys: number;
  hash: string;
}

/** `etcdBinary` (its etcdctl beside it) must read both restores' data dirs: gardener's embedded etcd 3.5 marks its own 3.5. */
export async function restoredKeyspace(dir: string, name: string, peerURL: string, etcdBinary: string): Promise<RestoredKeyspace> {
  const { etcd, client } = await startRestored(dir, name, peerURL, etcdBinary);
  try {
    const all = { key: Buffer.from([0]), range_end: Buffer.from([0]), count_only: true, serializable: true };
    const counted = await client.kv.range(all);
    // etcd3's protos lack Maintenance.HashKV: etcdctl of the same release asks for it.
    const endpoint = etcd.spec.listenClientUrls.join(',');
    const { stdout } = await run(join(dirname(etcdBinary), 'etcdctl'), ['endpoint', 'hashkv', '--endpoints', endpoint, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const hash = String((JSON.parse(stdout) as { HashKV: { hash: number } }[])[0]?.HashKV.hash);
    return { revision: Number(counted.header.revision), keys: Number(counted.count), hash };
  } finally {
    client.close();
    await etcd.stop();
  }
}
