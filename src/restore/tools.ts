import { etcdTools, releasesIn, type EtcdRelease, type EtcdTools } from '../etcd/tools.js';
import { RestoreError } from './plan.js';
import { chooseRelease, type RecordedVersion } from './release-choice.js';

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

/** The release a restore runs and why (the restore's result and log say it). */
export interface RestoreRelease {
  tools: EtcdTools;
  minor: string;
  by: 'backup' | 'etcd-version' | 'newest';
  reason: string;
  warning?: string;
  upgradedFrom?: string;
}

/**
 * The releases a restore may pick from (releasesIn); none is a bad --etcd-bin-dir (or PATH), said
 * before the store or the data dir is looked at.
 */
export async function restoreReleases(binDir: string | undefined): Promise<EtcdRelease[]> {
  const releases = await releasesIn(binDir);
  if (releases.length > 0) return releases;
  const where = binDir ? `--etcd-bin-dir ${binDir} has no etcd that runs and prints its version (nor folders v3.5/, v3.6/ holding one)` : 'PATH has no etcd that runs and prints its version';
  throw new RestoreError('bad_request', `${where}: a restore needs etcd's tools`);
}

/**
 * The release among `releases` for a chain whose objects record `recorded` (and whose full
 * snapshot's db has `storageVersion`, once read); refused with `etcd_version` when the backups need
 * a release that is not there.
 */
export function restoreRelease(releases: readonly EtcdRelease[], configured: string | undefined, recorded: readonly RecordedVersion[], storageVersion?: string): RestoreRelease {
  const choice = chooseRelease({ recorded, storageVersion, available: releases.map((r) => r.minor), configured });
  if ('refused' in choice) throw new RestoreError('etcd_version', choice.refused);
  const release = releases.find((r) => r.minor === choice.minor) as EtcdRelease;
  return {
    tools: release.tools,
    minor: choice.minor,
    by: choice.by,
    reason: choice.reason,
    ...(choice.warning ? { warning: choice.warning } : {}),
    ...(choice.upgradedFrom ? { upgradedFrom: choice.upgradedFrom } : {}),
  };
}
