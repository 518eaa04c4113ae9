// What Azure Blob Storage accepts as metadata names and block ids, and how our names map onto them.
// Pure: no I/O, tested on its own (test/snapstore/azblob-names.test.ts).

/**
 * Our own metadata, beside the caller's. `_` followed by a letter past `f` never comes out of
 * `encodeMetaKey`, so a caller's key can never collide with these.
 */
export const SHA256_META = 'ebs_sha256';
/** A random id on each conditional write, as on S3 and GCS: it tells a retry's 412 from another writer's. */
export const WRITE_ID_META = 'ebs_writeid';
const INTERNAL = new Set([SHA256_META, WRITE_ID_META]);

/**
 * Azure metadata names must be C# identifiers (letters, digits, `_`; no leading digit) and come back
 * lower-cased (they travel as `x-ms-meta-*` headers). Callers use keys such as `ebs-cluster-id`, so
 * every byte outside `[a-z0-9]` (and a leading digit) is written as `_` and two hex digits.
 */
export function encodeMetaKey(key: string): string {
  let out = '';
  for (const [i, byte] of Buffer.from(key, 'utf8').entries()) {
    const kept = (byte >= 0x61 && byte <= 0x7a) || (i > 0 && byte >= 0x30 && byte <= 0x39);
    out += kept ? String.fromCharCode(byte) : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of `encodeMetaKey`; undefined for a name it cannot have produced (written by another tool). */
export function decodeMetaKey(name: string): string | undefined {
  const bytes: number[] = [];
  const lower = name.toLowerCase();
  for (let i = 0; i < lower.length; i++) {
    const ch = lower[i] as string;
    if (ch !== '_') {
      bytes.push(ch.charCodeAt(0));
      continue;
    }
    const hex = lower.slice(i + 1, i + 3);
    if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The caller's metadata as Azure stores it, with ours added. */
export function toAzureMetadata(metadata: Record<string, string>, internal: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) out[encodeMetaKey(k)] = v;
  return { ...out, ...internal };
}

/** The caller's metadata from what Azure returns: ours left out, other tools' names as they are. */
export function fromAzureMetadata(stored: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(stored ?? {})) {
    if (INTERNAL.has(name.toLowerCase())) continue;
    out[decodeMetaKey(name) ?? name] = v;
  }
  return out;
}

/**
 * Block ids must be base64 and of one length within a blob; the upload id keeps the blocks of two
 * uploads racing for one name apart until one of them commits.
 */
export function blockId(uploadId: string, index: number): string {
  return Buffer.from(`${uploadId}-${String(index).padStart(6, '0')}`).toString('base64');
}

/** Azure's rules for a container name, or undefined when it follows them. */
export function containerNameProblem(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return `"${name}" must be 3 to 63 characters long`;
  if (!/^[a-z0-9-]+$/.test(name)) return `"${name}" may hold only lowercase letters, digits and hyphens`;
  if (!/^[a-z0-9]/.test(name) || name.endsWith('-') || name.includes('--')) return `"${name}" must start and end with a letter or digit, with no two hyphens in a row`;
  return undefined;
}
