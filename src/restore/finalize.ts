import { join } from 'node:path';
import { inspectBoltFile } from '../etcd/bolt.js';
import { EtcdctlError, snapshotRestore, type SnapshotRestoreSpec } from '../etcd/etcdctl.js';
import { TemporaryEtcdError } from '../etcd/temporary.js';
import { RestoreError } from './plan.js';

/** This member's identity as `snapshot restore` writes it into the new data dir. */
export type MemberIdentity = Omit<SnapshotRestoreSpec, 'file' | 'dataDir' | 'skipHashCheck'>;

/**
 * The db a stopped temporary etcd left in `tempDataDir`, checked to hold `revision`, restored with
 * this member's name, peers, token and cluster ID into `part`; the temporary etcd's loopback
 * identity stays behind. `what` names the etcd in the error ("replayed", "answered with").
 */
export async function restoreTemporaryDb(tempDataDir: string, revision: number, what: string, part: string, identity: MemberIdentity): Promise<void> {
  const db = join(tempDataDir, 'member', 'snap', 'db');
  const facts = await inspectBoltFile(db);
  if (facts.revision !== revision) {
    throw new RestoreError('revision_mismatch', `the temporary etcd's db holds revision ${facts.revision} after it stopped, not the ${revision} ${what}`);
  }
  await snapshotRestore({ file: db, dataDir: part, skipHashCheck: true, ...identity });
}

/** Any failure of a restore as a RestoreError, with the code an operator acts on. */
export function asRestoreError(err: unknown, what: string, aborted = false): RestoreError {
  if (err instanceof RestoreError) return err;
  const code = aborted ? 'aborted' : err instanceof EtcdctlError || err instanceof TemporaryEtcdError ? 'etcd_failed' : 'failed';
  return new RestoreError(code, `${what}: ${(err as Error).message}`, { cause: err });
}
