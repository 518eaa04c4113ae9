// Writes docs/flags.md and docs/api.md (`npm run docs`), or with --check fails when a committed one
// is stale. Run `npm run openapi` first when routes changed: api.md is made from openapi/openapi.yaml.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { renderApi, renderFlags } from './docs-render.js';

const root = new URL('../', import.meta.url);
const files: Array<[URL, string]> = [
  [new URL('docs/flags.md', root), renderFlags()],
  [new URL('docs/api.md', root), renderApi(readFileSync(new URL('openapi/openapi.yaml', root), 'utf8'))],
];
if (process.argv.includes('--check')) {
  const stale = files.filter(([file, text]) => {
    try {
      return readFileSync(file, 'utf8') !== text;
    } catch {
      return true;
    }
  });
  for (const [file] of stale) console.error(`${file.pathname} is stale: run \`npm run docs\``);
  process.exit(stale.length > 0 ? 1 : 0);
}
mkdirSync(new URL('docs/', root), { recursive: true });
for (const [file, text] of files) {
  writeFileSync(file, text);
  console.log(`wrote ${file.pathname}`);
}
