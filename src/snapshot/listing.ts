/**
 * The store's snapshots as pages, newest first. A page token is the sort key of the last snapshot
 * sent, so a listing that changes between pages neither repeats nor skips what was already sent.
 */
import type { SnapshotRef } from './names.js';

/** By last revision, then name, both descending. */
export function newestFirst(a: SnapshotRef, b: SnapshotRef): number {
  return b.lastRevision - a.lastRevision || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);
}

interface PageKey {
  lastRevision: number;
  name: string;
}

function encodeToken(s: PageKey): string {
  return Buffer.from(JSON.stringify([s.lastRevision, s.name])).toString('base64url');
}

/** The key in a token this module made, or undefined for anything else. */
export function decodePageToken(token: string): PageKey | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === 'string') return { lastRevision: v[0] as number, name: v[1] };
  } catch {
    // fall through: a token we did not make
  }
  return undefined;
}

export interface SnapshotPage {
  snapshots: SnapshotRef[];
  nextPageToken?: string;
}

/** Up to `limit` snapshots after `after` (a decoded page token), newest first. */
export function snapshotPage(listing: readonly SnapshotRef[], limit: number, after?: PageKey): SnapshotPage {
  const sorted = [...listing].sort(newestFirst);
  const rest = after ? sorted.filter((s) => s.lastRevision < after.lastRevision || (s.lastRevision === after.lastRevision && s.name < after.name)) : sorted;
  const page: SnapshotPage = { snapshots: rest.slice(0, limit) };
  const last = page.snapshots[page.snapshots.length - 1];
  if (rest.length > page.snapshots.length && last) page.nextPageToken = encodeToken(last);
  return page;
}
