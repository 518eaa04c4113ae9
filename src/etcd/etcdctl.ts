import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { etcdTools, type EtcdTools } from './tools.js';

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
  /** Default: the tools beside the `etcd` in PATH. */
  tools?: EtcdTools;
}

export class EtcdctlError extends Error {
  override name = 'EtcdctlError';
}

/** The program that restores snapshots: etcdutl from 3.5 on (3.6 has no `etcdctl snapshot restore`), etcdctl on 3.4. */
export function snapshotRestoreTool(tools: EtcdTools): string {
  return tools.etcdutl ?? tools.etcdctl;
}

/**
 * `etcdutl snapshot restore` (or etcdctl's on 3.4, same flags): a new data dir holding the db with
 * a fresh membership (this member only knows the cluster given here) and a new cluster ID derived
 * from it and the token.
 */
export async function snapshotRestore(spec: SnapshotRestoreSpec): Promise<void> {
  const tool = snapshotRestoreTool(spec.tools ?? etcdTools());
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
    // ETCDCTL_API matters to 3.4's etcdctl only (it defaults to v3 from 3.4 on, but an inherited 2 would break it).
    await run(tool, args, { env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    const detail = (e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message;
    throw new EtcdctlError(`${basename(tool)} snapshot restore ${spec.file} into ${spec.dataDir} failed: ${detail}`, { cause: err });
  }
}
