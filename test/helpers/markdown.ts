import { readFileSync } from 'node:fs';

/** GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(file: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*(```|~~~)/.test(text)) fenced = !fenced;
    const h = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(text);
    if (!h) continue;
    const base = (h[1] as string)
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}
