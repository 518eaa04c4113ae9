// Writes openapi/openapi.yaml from the route schemas (`npm run openapi`), or with --check fails
// when the committed file is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { openapiYaml } from '../src/server/openapi.js';

const FILE = new URL('../openapi/openapi.yaml', import.meta.url);
const yaml = await openapiYaml();
if (process.argv.includes('--check')) {
  if (readFileSync(FILE, 'utf8') !== yaml) {
    console.error('openapi/openapi.yaml is stale: run `npm run openapi`');
    process.exit(1);
  }
} else {
  writeFileSync(FILE, yaml);
  console.log(`wrote ${FILE.pathname}`);
}
