import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { openapiYaml } from '../../src/server/openapi.js';

describe('openapi/openapi.yaml', () => {
  it('matches the route schemas (run `npm run openapi` when this fails)', async () => {
    const committed = readFileSync(new URL('../../openapi/openapi.yaml', import.meta.url), 'utf8');
    assert.equal(committed, await openapiYaml());
  });

  it('documents every route', async () => {
    const yaml = await openapiYaml();
    for (const route of ['/healthz:', '/readyz:', '/status:', '/metrics:']) assert.ok(yaml.includes(`  ${route}`), route);
  });
});
