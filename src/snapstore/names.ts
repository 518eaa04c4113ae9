import { StoreError } from './types.js';

const MAX_NAME_BYTES = 1024; // S3's and GCS's limit on a key

/** Names the local store uses for its own files (see local.ts). */
export const RESERVED_META_DIR = '.ebs-meta';
export const RESERVED_TMP_MARK = '.ebs-tmp-';

/**
 * Object names come from our own code and, through the API, from clients: refuse anything that could
 * escape the prefix (`..`, absolute paths) or that stores treat differently (empty segments,
 * backslashes, control characters), so one name means the same object on every provider.
 */
export function checkObjectName(store: string, name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new StoreError('invalid_name', store, `invalid object name ${JSON.stringify(name)}: ${problem}`);
}

export function nameProblem(name: string): string | undefined {
  if (name === '') return 'empty';
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `longer than ${MAX_NAME_BYTES} bytes`;
  if (name.startsWith('/')) return 'absolute';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return 'control character or backslash';
  const segments = name.split('/');
  if (segments.some((s) => s === '')) return 'empty path segment';
  if (segments.some((s) => s === '.' || s === '..')) return 'relative path segment';
  // The local store keeps checksums under `.ebs-meta/` and uploads in progress as `*.ebs-tmp-*`: a
  // client name there could overwrite another object's checksum or hide from listings. Refused on
  // every provider, so a name means the same thing wherever the backups live.
  if (segments[0] === RESERVED_META_DIR) return `"${RESERVED_META_DIR}" is reserved for the store's checksums`;
  if (segments.some((s) => s.includes(RESERVED_TMP_MARK))) return `"${RESERVED_TMP_MARK}" is reserved for uploads in progress`;
  return undefined;
}

/** A list prefix may be empty or end in `/`; otherwise it follows the name rules. */
export function checkPrefix(store: string, prefix: string): void {
  if (prefix === '') return;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  checkObjectName(store, trimmed);
}

/** Joins the store's key prefix (from its URL) and an object name. */
export function keyOf(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}/${name}`;
}
