/**
 * Snapshot object names, in gardener etcd-backup-restore's `v2` layout so that a bucket written by
 * either tool restores with the other: `v2/<Kind>-<start>-<last>-<unix seconds><suffix>`, where Kind
 * is `Full` or `Incr`, revisions are zero-padded to at least 8 digits, and the suffix names the
 * compression (`.gz`, `.zlib`, `.Z`, none), optionally followed by `.final`.
 */

export type SnapshotKind = 'full' | 'delta';

export type Compression = 'gzip' | 'zlib' | 'lzw' | 'none';

export const FORMAT_DIR = 'v2';

const SUFFIX_OF: Record<Compression, string> = { gzip: '.gz', zlib: '.zlib', lzw: '.Z', none: '' };
const KIND_TOKEN: Record<SnapshotKind, string> = { full: 'Full', delta: 'Incr' };

/** One snapshot object as its name describes it. */
export interface SnapshotRef {
  /** Object name relative to the store's prefix, e.g. `v2/Incr-00000043-00000051-1700000005.gz`. */
  name: string;
  kind: SnapshotKind;
  /** First revision the object covers (0 for a full snapshot). */
  startRevision: number;
  /** Last revision the object covers: for a full snapshot, the revision inside the db. */
  lastRevision: number;
  /** Creation time, to the second (all the name carries). */
  createdAt: Date;
  compression: Compression;
  /** Written by the anchor when its member shut down; restores like any other. */
  final: boolean;
}

export function compressionSuffix(c: Compression): string {
  return SUFFIX_OF[c];
}

export function snapshotName(s: Omit<SnapshotRef, 'name' | 'final'> & { final?: boolean }): string {
  const pad = (n: number): string => String(n).padStart(8, '0');
  const secs = Math.floor(s.createdAt.getTime() / 1000);
  return `${FORMAT_DIR}/${KIND_TOKEN[s.kind]}-${pad(s.startRevision)}-${pad(s.lastRevision)}-${secs}${SUFFIX_OF[s.compression]}${s.final ? '.final' : ''}`;
}

const NAME_RE = /^(?:.*\/)?v2\/(Full|Incr)-(\d{1,19})-(\d{1,19})-(\d{1,19})(\.gz|\.zlib|\.Z)?(\.final)?$/;

/**
 * The snapshot a name describes, or undefined for anything else in the bucket (our own metadata,
 * the anchor's chunk parts `v2/<name>/<n>`, v1 objects, foreign files): those are never part of a
 * chain and never deleted by retention.
 */
export function parseSnapshotName(name: string): SnapshotRef | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const [, kindToken, start, last, secs, suffix, final] = m as unknown as [string, string, string, string, string, string | undefined, string | undefined];
  const startRevision = Number(start);
  const lastRevision = Number(last);
  const seconds = Number(secs);
  if (!Number.isSafeInteger(startRevision) || !Number.isSafeInteger(lastRevision) || !Number.isSafeInteger(seconds)) return undefined;
  if (startRevision > lastRevision) return undefined;
  const compression = (Object.keys(SUFFIX_OF) as Compression[]).find((c) => SUFFIX_OF[c] === (suffix ?? '')) as Compression;
  return {
    name,
    kind: kindToken === 'Full' ? 'full' : 'delta',
    startRevision,
    lastRevision,
    createdAt: new Date(seconds * 1000),
    compression,
    final: final !== undefined,
  };
}
