import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import madge from 'madge';

// The boundaries docs/architecture.md promises, checked on the source itself: etcd is reached only
// through src/etcd/, the product never leans on its tests, and no module cycle hides a layering mistake.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) out.push(relative(ROOT, join(e.parentPath, e.name)));
  }
  return out.sort();
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
function importsOf(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) {
    found.push((m[1] ?? m[2] ?? m[3]) as string);
  }
  return found;
}

describe('architecture', () => {
  it('only src/etcd/ imports etcd3', async () => {
    const offenders: string[] = [];
    for (const file of await tsFiles('src')) {
      if (file.startsWith('src/etcd/')) continue;
      const specs = importsOf(await readFile(join(ROOT, file), 'utf8'));
      for (const s of specs) if (s === 'etcd3' || s.startsWith('etcd3/')) offenders.push(`${file} imports ${s}`);
    }
    assert.deepEqual(offenders, []);
  });

  it('neither src/ nor demo/ imports the tests', async () => {
    const offenders: string[] = [];
    for (const file of [...(await tsFiles('src')), ...(await tsFiles('demo'))]) {
      for (const s of importsOf(await readFile(join(ROOT, file), 'utf8'))) if (/(^|\/)test\//.test(s)) offenders.push(`${file} imports ${s}`);
    }
    assert.deepEqual(offenders, []);
  });

  it('src/ has no import cycle', async () => {
    const graph = await madge(join(ROOT, 'src'), { fileExtensions: ['ts'], tsConfig: join(ROOT, 'tsconfig.json') });
    assert.ok(Object.keys(graph.obj()).length > 50, 'madge found the modules');
    assert.deepEqual(graph.circular(), []);
  });

  it('finds the imports it looks for (the checks above are not vacuous)', () => {
    assert.deepEqual(importsOf("import type { X } from 'etcd3';\nexport { y } from '../test/helpers/a.js';\nconst m = await import('etcd3/lib/x.js');\nimport 'side-effect';"), [
      'etcd3',
      '../test/helpers/a.js',
      'etcd3/lib/x.js',
      'side-effect',
    ]);
  });
});
