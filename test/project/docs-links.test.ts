import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { anchors } from '../helpers/markdown.js';

// The documents ship with the repository; a link to a moved or deleted file, or to something
// outside the repository (the old ../shared/DESIGN.md), sends a reader nowhere.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

interface Link {
  doc: string;
  line: number;
  target: string;
}

/** Inline links and images `[text](target)` and reference definitions `[id]: target`, outside code. */
function links(doc: string): Link[] {
  const out: Link[] = [];
  let fenced = false;
  readFileSync(join(ROOT, doc), 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (/^\s*(```|~~~)/.test(text)) fenced = !fenced;
      if (fenced) return;
      // Inline code may show link syntax without being a link.
      const prose = text.replace(/`[^`]*`/g, (code) => (code.includes('](') ? '' : code));
      for (const m of prose.matchAll(/!?\[(?:[^\]]|\\\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ doc, line: i + 1, target: m[1] as string });
      const ref = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(prose);
      if (ref) out.push({ doc, line: i + 1, target: ref[1] as string });
    });
  return out;
}

const isExternal = (target: string): boolean => /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//');

describe('documentation links', () => {
  const all = DOCS.flatMap(links);

  it('finds the links it checks (the parser has not gone blind)', () => {
    assert.ok(DOCS.includes('docs/architecture.md'));
    const fromReadme = all.filter((l) => l.doc === 'README.md' && !isExternal(l.target)).map((l) => l.target);
    assert.ok(fromReadme.includes('docs/architecture.md'), fromReadme.join(', '));
    assert.ok(fromReadme.includes('docs/flags.md'), fromReadme.join(', '));
  });

  it('every relative link in README.md and docs/*.md points at a file or folder in the repository', () => {
    const broken: string[] = [];
    for (const l of all) {
      if (isExternal(l.target) || l.target.startsWith('#')) continue;
      const path = decodeURIComponent(l.target.split('#')[0] as string);
      const abs = resolve(ROOT, dirname(l.doc), path);
      const rel = relative(ROOT, abs);
      if (rel.startsWith('..')) broken.push(`${l.doc}:${l.line}: ${l.target} leaves the repository`);
      else if (!existsSync(abs)) broken.push(`${l.doc}:${l.line}: ${l.target} does not exist`);
    }
    assert.deepEqual(broken, []);
  });

  it('every #anchor of a link to a markdown file names a heading in it', () => {
    const broken: string[] = [];
    for (const l of all) {
      if (isExternal(l.target) || !l.target.includes('#')) continue;
      const [path, anchor] = l.target.split('#') as [string, string];
      const file = path === '' ? join(ROOT, l.doc) : resolve(ROOT, dirname(l.doc), decodeURIComponent(path));
      if (!file.endsWith('.md') || !existsSync(file) || statSync(file).isDirectory()) continue;
      if (!anchors(file).has(decodeURIComponent(anchor))) broken.push(`${l.doc}:${l.line}: ${l.target} has no such heading`);
    }
    assert.deepEqual(broken, []);
  });

  it('no document mentions ../shared/ (files outside the repository that users never get)', () => {
    const offenders = DOCS.filter((doc) => readFileSync(join(ROOT, doc), 'utf8').includes('../shared/'));
    assert.deepEqual(offenders, []);
  });
});
