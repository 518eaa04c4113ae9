/**
 * Copying backups from one store to another (a bucket in another region or cloud): full and delta
 * snapshots with their metadata, oldest first so that an interrupted copy leaves whole chains
 * behind, every object checked on both sides (the source's `get` fails on bytes that do not match
 * its recorded checksum, the target's `put` compares its own checksum with the bytes sent), and
 * what the target already holds skipped, so a copy killed midway resumes where it stopped.
 */
import type { Logger } from '../logger.js';
import type { SnapStore } from '../snapstore/types.js';
import { listSnapshotObjects } from './gc-run.js';
import type { SnapshotRef } from './names.js';

export interface CopySelection {
  /** The newest N full snapshots and the deltas after each (default: everything). */
  chains?: number;
  /** Only snapshots created at or after this time. */
  since?: Date;
  /** Only the snapshots this says to keep (a retention plan: what it would delete is not copied). */
  keep?: (listing: readonly SnapshotRef[]) => ReadonlySet<string>;
}

/** What to copy, oldest first: chains are whole (a full snapshot before the deltas that build on it). */
export function selectForCopy(listing: readonly SnapshotRef[], o: CopySelection): SnapshotRef[] {
  const byRevision = [...listing].sort((a, b) => a.lastRevision - b.lastRevision || a.startRevision - b.startRevision || a.name.localeCompare(b.name));
  let selected = byRevision;
  if (o.chains !== undefined) {
    const fulls = byRevision.filter((s) => s.kind === 'full');
    const first = fulls[Math.max(0, fulls.length - o.chains)];
    // Deltas that end at or before the oldest chosen full snapshot belong to older chains.
    selected = first ? byRevision.filter((s) => (s.kind === 'full' ? s.lastRevision >= first.lastRevision : s.lastRevision > first.lastRevision)) : [];
  }
  if (o.since) {
    const since = o.since.getTime();
    selected = selected.filter((s) => s.createdAt.getTime() >= since);
  }
  if (o.keep) {
    const keep = o.keep(listing);
    selected = selected.filter((s) => keep.has(s.name));
  }
  return selected;
}

export interface CopyReport {
  from: string;
  to: string;
  copied: { name: string; size: number; sha256: string; verifiedBy: string }[];
  /** Already in the target with the same size. */
  skipped: string[];
  bytes: number;
}

export interface CopyOptions extends CopySelection {
  log: Logger;
  signal?: AbortSignal;
  /** --store-retention: a copy is locked until its snapshot's creation plus this, as the original was. */
  storeRetentionMs?: number;
}

export async function copySnapshots(from: SnapStore, to: SnapStore, o: CopyOptions): Promise<CopyReport> {
  const source = await listSnapshotObjects(from);
  const sizes = new Map(source.map((l) => [l.ref.name, l.size]));
  const held = new Map((await listSnapshotObjects(to)).map((l) => [l.ref.name, l.size]));
  const report: CopyReport = { from: from.url, to: to.url, copied: [], skipped: [], bytes: 0 };
  for (const s of selectForCopy(
    source.map((l) => l.ref),
    o,
  )) {
    o.signal?.throwIfAborted();
    // An object already there with the size the listing gives is skipped without a request of its
    // own: a sync that runs after every upload must cost two listings, not a HEAD per object.
    if (held.get(s.name) === sizes.get(s.name)) {
      report.skipped.push(s.name);
      continue;
    }
    const head = await from.head(s.name);
    if (!head) continue; // deleted by retention since the listing
    const body = await from.get(s.name, o.signal ? { signal: o.signal } : {});
    const retainUntil = o.storeRetentionMs ? new Date(s.createdAt.getTime() + o.storeRetentionMs) : undefined;
    const put = await to
      .put(s.name, body, {
        metadata: { ...head.metadata, 'ebs-copied-from': from.url },
        ...(o.signal ? { signal: o.signal } : {}),
        // A lock that would already have ended is not asked for: stores refuse a date in the past.
        ...(retainUntil && retainUntil.getTime() > Date.now() ? { retainUntil } : {}),
      })
      .catch((err: unknown) => {
        // The download is not the target's to end: without this its socket or file stays open.
        body.destroy();
        throw err;
      });
    if (put.size !== head.size) throw new Error(`${s.name}: ${put.size} bytes arrived in ${to.url}, the source holds ${head.size}`);
    report.copied.push({ name: s.name, size: put.size, sha256: put.sha256, verifiedBy: put.verifiedBy });
    report.bytes += put.size;
    o.log.info({ snapshot: s.name, size: put.size, verifiedBy: put.verifiedBy }, 'snapshot copied');
  }
  return report;
}
