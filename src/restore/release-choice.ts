/**
 * Which etcd release restores a chain, decided on plain data: the backups' recorded versions, the
 * releases found in --etcd-bin-dir, and --etcd-version. Pure, so every case is decided (and tested)
 * without a process.
 *
 * A restore must run the release of the cluster the backups were taken from: a data dir written by
 * 3.6 (its db carries meta/storageVersion) cannot be opened by 3.5 without `etcdutl migrate`, and a
 * chain that crosses an upgrade 3.5 -> 3.6 ends in 3.6's history, so its newest recorded version
 * decides. When the needed release is missing, the next minor restores (etcd's supported upgrade
 * step) unless --etcd-version says the cluster runs the older one; anything else is refused: another
 * release could write a data dir the cluster's etcd cannot open, found out only when the member fails.
 */

/** An etcd version as recorded on one object of the chain (`ebs-etcd-version`). */
export interface RecordedVersion {
  name: string;
  version: string;
}

export interface ReleaseFacts {
  /** The objects of the chain that record the version of the etcd they were taken from. */
  recorded: readonly RecordedVersion[];
  /** meta/storageVersion of the full snapshot's db, once read: 3.6 and later write it, 3.5 never. */
  storageVersion?: string | undefined;
  /** Minors (3.5, 3.6) whose tools --etcd-bin-dir (or PATH) holds. */
  available: readonly string[];
  /** --etcd-version: the minor the cluster runs, used when the backups say nothing. */
  configured?: string | undefined;
}

export type ReleaseChoice =
  | {
      minor: string;
      /** backup: the chain records it; etcd-version: --etcd-version, the backups record none; newest: neither says. */
      by: 'backup' | 'etcd-version' | 'newest';
      reason: string;
      /** Something the operator should know although the restore goes on (--etcd-version disagrees). */
      warning?: string;
      /** The backups' own minor, when the next one restores them (its tools missing): what comes out is of `minor`. */
      upgradedFrom?: string;
    }
  | {
      refused: string;
      /** The minor the restore needs, when one is known. */
      needed?: string;
      found: string[];
    };

/** [major, minor] of "3.6", "3.6.5", "v3.6.0-rc.1"; undefined for anything else. */
function parseMinor(version: string): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+\S*)?$/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function compareMinors(a: string, b: string): number {
  const [am = 0, an = 0] = parseMinor(a) ?? [];
  const [bm = 0, bn = 0] = parseMinor(b) ?? [];
  return am - bm || an - bn;
}

/** The minor after `minor` (3.5 -> 3.6); undefined for anything that is not a minor. */
function nextMinor(minor: string): string | undefined {
  const p = parseMinor(minor);
  return p ? `${p[0]}.${p[1] + 1}` : undefined;
}

function minorText(version: string): string | undefined {
  const p = parseMinor(version);
  return p ? `${p[0]}.${p[1]}` : undefined;
}

/** The sorted, distinct minors, oldest first, as the refusals list them. */
function sortedMinors(minors: readonly string[]): string[] {
  return [...new Set(minors)].sort(compareMinors);
}

function foundText(found: readonly string[]): string {
  return found.length === 0 ? 'no etcd release' : found.map((m) => `v${m}`).join(', ');
}

/** What the backups say about the release that wrote them: the newest recorded minor, else the db's storage version. */
function backupMinor(facts: ReleaseFacts): { minor: string; source: string } | { bad: string } | undefined {
  let newest: { minor: string; source: string } | undefined;
  for (const r of facts.recorded) {
    const minor = minorText(r.version);
    if (minor === undefined) return { bad: `${r.name} records etcd version "${r.version}", which is not an etcd version (such as 3.6.5)` };
    if (!newest || compareMinors(minor, newest.minor) > 0) newest = { minor, source: `${r.name} was taken from etcd ${r.version}` };
  }
  if (newest) return newest;
  if (facts.storageVersion === undefined) return undefined;
  const minor = minorText(facts.storageVersion);
  if (minor === undefined) return { bad: `the full snapshot's db has storage version "${facts.storageVersion}", which is not an etcd version` };
  return { minor, source: `the full snapshot's db has storage version ${facts.storageVersion}` };
}

export function chooseRelease(facts: ReleaseFacts): ReleaseChoice {
  const found = sortedMinors(facts.available.map((a) => minorText(a) ?? a));
  const configured = facts.configured ? minorText(facts.configured) : undefined;
  if (facts.configured && configured === undefined) return { refused: `--etcd-version ${facts.configured} is not an etcd minor version such as 3.6`, found };
  const backup = backupMinor(facts);
  if (backup && 'bad' in backup) return { refused: backup.bad, found };
  if (backup) {
    const next = nextMinor(backup.minor);
    // etcd upgrades one minor at a time: the next release opens the backups' data and may restore
    // them, as long as the cluster's etcd is that release too (--etcd-version does not say the
    // backups' own, which could not open what the next one wrote). Refusing here would leave a
    // cluster whose image dropped the older release with no way back but a hand-made restore.
    if (!found.includes(backup.minor) && next !== undefined && found.includes(next) && (configured === undefined || configured === next)) {
      return {
        minor: next,
        by: 'backup',
        reason: `${backup.source}; --etcd-bin-dir holds no v${backup.minor}, and etcd ${next} upgrades a ${backup.minor} data dir`,
        warning: `restoring etcd ${backup.minor} backups with etcd ${next}: the restored member runs ${next}, as an upgrade would; every member must run ${next}`,
        upgradedFrom: backup.minor,
      };
    }
    if (!found.includes(backup.minor)) {
      return {
        refused:
          `the backups need etcd ${backup.minor} (${backup.source}) but --etcd-bin-dir holds ${foundText(found)}: ` +
          `add the v${backup.minor} tools; another release could write a data dir etcd ${backup.minor} cannot open, or open one it cannot read`,
        needed: backup.minor,
        found,
      };
    }
    const choice: ReleaseChoice = { minor: backup.minor, by: 'backup', reason: backup.source };
    if (configured !== undefined && configured !== backup.minor) {
      choice.warning = `--etcd-version says the cluster runs etcd ${configured}, but ${backup.source}: restoring with ${backup.minor}, which the cluster's etcd must be able to open`;
    }
    return choice;
  }
  if (configured !== undefined) {
    if (!found.includes(configured))
      return { refused: `the backups record no etcd version and --etcd-version ${configured} has no tools in --etcd-bin-dir, which holds ${foundText(found)}`, needed: configured, found };
    return { minor: configured, by: 'etcd-version', reason: `the backups record no etcd version (taken before versions were recorded, or by etcd 3.5 or older); --etcd-version is ${configured}` };
  }
  const newest = found[found.length - 1];
  if (newest === undefined) return { refused: 'no etcd release was found to restore with (--etcd-bin-dir, or an etcd in PATH)', found };
  return { minor: newest, by: 'newest', reason: `neither the backups nor --etcd-version name an etcd version: the newest release found, ${newest}` };
}
