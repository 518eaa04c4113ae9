import { etcdTools, type EtcdTools } from '../etcd/tools.js';
import { RestoreError } from './plan.js';

/**
 * One release's tools for every step of a restore: the temporary etcd must read what the restore
 * wrote. A wrong --etcd-bin-dir fails here, before anything is fetched or removed.
 */
export function restoreTools(binDir: string | undefined): EtcdTools {
  try {
    return etcdTools(binDir);
  } catch (err) {
    throw new RestoreError('bad_request', (err as Error).message, { cause: err });
  }
}
