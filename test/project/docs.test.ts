import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { renderApi, renderFlags } from '../../scripts/docs-render.js';
import { envName, SPECS } from '../../src/config/options.js';

const read = (p: string): string => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');

describe('generated docs', () => {
  it('docs/flags.md matches src/config/options.ts (run `npm run docs` when this fails)', () => {
    assert.equal(read('docs/flags.md'), renderFlags());
  });

  it('docs/api.md matches openapi/openapi.yaml (run `npm run openapi && npm run docs` when this fails)', () => {
    assert.equal(read('docs/api.md'), renderApi(read('openapi/openapi.yaml')));
  });

  it('flags.md names every flag with its environment variable and default', () => {
    const md = renderFlags();
    for (const s of SPECS) {
      assert.ok(md.includes(`| \`--${s.flag}\` | \`${envName(s.flag)}\` |`), s.flag);
      if (s.default) assert.ok(md.includes(`\`${s.default}\``), `${s.flag} default`);
    }
  });

  it('api.md has a section for every operation in the spec, and marks the token-guarded ones', () => {
    const spec = parseYaml(read('openapi/openapi.yaml')) as { paths: Record<string, Record<string, { security?: unknown }>> };
    const md = renderApi(read('openapi/openapi.yaml'));
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        assert.ok(md.includes(`\n## ${method.toUpperCase()} ${path}\n`), `${method} ${path}`);
        if (method === 'post') assert.ok(op.security, `${path}: a mutating route without the token requirement`);
      }
    }
  });
});
