import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SnapshotRestoreSpec {
  /** A snapshot file (etcd's stream with its sha256 trailer), or a db file with `skipHashCheck`. */
  file: string;
  dataDir: string;
  name: string;
  initialCluster: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
  /** A db copied out of a data dir has no sha256 trailer. */
  skipHashCheck?: boolean;
  etcdctlBinary?: string;
}

export class EtcdctlError extends Error {
  override name = 'EtcdctlError';
}

/**
 * `etcdctl snapshot restore`: a new data dir holding the db with a fresh membership (this member
 * only knows the cluster given here) and a new cluster ID derived from it and the token.
 */
export async function etcdctlSnapshotRestore(spec: SnapshotRestoreSpec): Promise<void> {
  const args = [
    'snapshot',
    'restore',
    spec.file,
    `--data-dir=${spec.dataDir}`,
    `--name=${spec.name}`,
    `--initial-cluster=${spec.initialCluster}`,
    `--initial-cluster-token=${spec.initialClusterToken}`,
    `--initial-advertise-peer-urls=${spec.initialAdvertisePeerUrls.join(',')}`,
  ];
  if (spec.skipHashCheck) args.push('--skip-hash-check');
  try {
    await run(spec.etcdctlBinary ?? 'etcdctl', args, { env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message;
    throw new EtcdctlError(`etcdctl snapshot restore ${spec.file} into ${spec.dataDir} failed: ${detail}`, { cause: err });
  }
}
