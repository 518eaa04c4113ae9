/**
 * One retention run against the store: the plan (retention.ts) minus what locks hold (gc-locks.ts),
 * deleted deltas first. A delete the store refuses because of a lock (or, with a retention policy
 * on the bucket, for lack of permission) is a hold, not a failure: it is retried at a later run.
 */
import { listAll, StoreError, ObjectLockedError, type SnapStore } from '../snapstore/types.js';
import { holdGroups, splitLocked, type HeldSnapshot } from './gc-locks.js';
import { FORMAT_DIR, parseSnapshotName, type SnapshotRef } from './names.js';
import { planRetention, type RetentionPolicy } from './retention.js';

/** A snapshot in the store, with its retain-until date where the listing carries it. */
export interface ListedSnapshot {
  ref: SnapshotRef;
  /** Bytes stored, as the listing gives it. */
  size: number;
  retainUntil?: Date;
}

/** The snapshots in the store, parsed; anything else in the bucket is ignored. */
export async function listSnapshotObjects(store: SnapStore): Promise<ListedSnapshot[]> {
  const out: ListedSnapshot[] = [];
  for await (const o of listAll(store, `${FORMAT_DIR}/`)) {
    const ref = parseSnapshotName(o.name);
    if (ref) out.push(o.retainUntil ? { ref, size: o.size, retainUntil: o.retainUntil } : { ref, size: o.size });
  }
  return out;
}

export interface GcSettings {
  retention: RetentionPolicy;
  /** --store-retention: how long each upload is locked; 0 when uploads are not locked. */
  storeRetentionMs: number;
}

export interface GcReport {
  deleted: string[];
  kept: number;
  held: HeldSnapshot[];
}

/**
 * The name carries the upload's start to the second and the lock ran from that start, so a
 * lock computed from the name may end up to a second early: the estimate waits that second.
 */
const NAME_TIME_SLACK_MS = 1000;

/** Whether the store refused a delete as it refuses one of a retained object. */
function refusedAsLocked(err: unknown): err is StoreError {
  return err instanceof StoreError && (err.code === 'locked' || err.code === 'access_denied');
}

export async function collectGarbage(store: SnapStore, listing: readonly ListedSnapshot[], settings: GcSettings, now: Date): Promise<GcReport> {
  const refs = listing.map((l) => l.ref);
  const dates = new Map(listing.map((l) => [l.ref.name, l.retainUntil]));
  const estimate = (s: SnapshotRef): Date | undefined => (settings.storeRetentionMs > 0 ? new Date(s.createdAt.getTime() + settings.storeRetentionMs + NAME_TIME_SLACK_MS) : undefined);
  const plan = planRetention(refs, settings.retention, now);
  const split = splitLocked(plan.delete, refs, (s) => dates.get(s.name) ?? estimate(s), now);
  const held = [...split.held];
  const deleted: string[] = [];
  const refusedDeltas: { ref: SnapshotRef; retainUntil?: Date | undefined }[] = [];

  const tryDelete = async (s: SnapshotRef): Promise<boolean> => {
    try {
      await store.delete(s.name);
      deleted.push(s.name);
      return true;
    } catch (err) {
      if (!refusedAsLocked(err)) throw err;
      const until = (err instanceof ObjectLockedError ? err.retainUntil : undefined) ?? estimate(s);
      held.push({ name: s.name, reason: 'lock', ...(until && until > now ? { retainUntil: until } : {}) });
      return false;
    }
  };

  for (const d of split.deltas) if (!(await tryDelete(d))) refusedDeltas.push({ ref: d, retainUntil: held[held.length - 1]?.retainUntil });
  const fulls = holdGroups(split.fulls, refusedDeltas, refs);
  held.push(...fulls.held);
  for (const f of fulls.free) await tryDelete(f);
  return { deleted, kept: plan.keep.length, held };
}
