// Renders docs/flags.md from the option table and docs/api.md from openapi/openapi.yaml. Pure
// functions of their input, so a test can tell when the committed files are stale.
import { parse as parseYaml } from 'yaml';
import { envName, SPECS, type OptionSpec } from '../src/config/options.js';

const GROUP_TITLES: Record<OptionSpec['group'], string> = {
  member: "Member (etcd's own flag names)",
  'etcd client': 'etcd client',
  store: 'Object store',
  snapshot: 'Snapshots',
  server: 'HTTP API',
  general: 'General',
};

const KIND_HINTS: Record<OptionSpec['kind'], string> = {
  string: 'text',
  secret: 'secret text (never logged or shown)',
  path: 'file path',
  duration: 'duration (500ms, 10s, 5m, 1h30m)',
  size: 'size (512KiB, 32MiB, 1GB)',
  boolean: 'true/false',
  integer: 'whole number',
  url: 'URL',
  urls: 'comma-separated URLs',
  initialCluster: 'name=peer-url,...',
  store: 'file:///path, s3://bucket/prefix, gs://bucket/prefix',
  hostPort: 'host:port',
  enum: 'one of the choices',
  cron: 'cron schedule',
};

/** Escapes text for a Markdown table cell. */
function cell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function renderFlags(specs: readonly OptionSpec[] = SPECS): string {
  const out: string[] = [
    '<!-- Generated from src/config/options.ts by `npm run docs`; do not edit by hand. -->',
    '# Flags',
    '',
    'Every setting has one flag, an `EBS_*` environment variable and a key in the `--config` YAML file',
    '(the flag name without dashes in front). Later sources win: defaults < file < environment < flags.',
    'Settings marked *required* are needed by `serve`; a *file* setting must name an existing file.',
    '',
  ];
  for (const group of Object.keys(GROUP_TITLES) as Array<OptionSpec['group']>) {
    const inGroup = specs.filter((s) => s.group === group);
    if (inGroup.length === 0) continue;
    out.push(`## ${GROUP_TITLES[group]}`, '', '| flag | environment | default | value | description |', '|---|---|---|---|---|');
    for (const s of inGroup) {
      const notes = [s.required ? '*required*' : '', s.mustExist ? '*file*' : '', s.notInFile ? '*not in the config file*' : ''].filter(Boolean).join(', ');
      const value = s.choices ? s.choices.map((c) => `\`${c}\``).join(', ') : KIND_HINTS[s.kind];
      const def = s.default !== undefined ? `\`${s.default === '' ? '""' : s.default}\`` : '';
      out.push(`| \`--${s.flag}\` | \`${envName(s.flag)}\` | ${cell(def)} | ${cell(value)} | ${cell(s.description)}${notes ? ` (${notes})` : ''} |`);
    }
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

type Schema = {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  enum?: unknown[];
  format?: string;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  default?: unknown;
  nullable?: boolean;
};

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: Array<{ in: string; name: string; required?: boolean; description?: string; schema: Schema }>;
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Schema }> }>;
}

function typeOf(s: Schema): string {
  if (s.anyOf) return s.anyOf.map(typeOf).join(' or ');
  if (s.enum) return s.enum.map((e) => `\`${String(e)}\``).join(', ');
  if (s.type === 'array') return `array of ${s.items ? typeOf(s.items) : 'any'}`;
  const base = s.format ? `${s.type ?? 'any'} (${s.format})` : (s.type ?? 'any');
  return s.nullable ? `${base} or null` : base;
}

function constraints(s: Schema): string {
  const c: string[] = [];
  if (s.minimum !== undefined) c.push(`>= ${s.minimum}`);
  if (s.maximum !== undefined) c.push(`<= ${s.maximum}`);
  if (s.maxLength !== undefined) c.push(`at most ${s.maxLength} characters`);
  if (s.default !== undefined) c.push(`default ${JSON.stringify(s.default)}`);
  return c.join(', ');
}

/** Rows `field | type | description` for an object's fields, nested objects as dotted names. */
function fieldRows(schema: Schema, prefix = '', depth = 0): string[] {
  const rows: string[] = [];
  const object = schema.type === 'array' && schema.items?.properties ? schema.items : schema;
  const arrayMark = schema.type === 'array' && object !== schema ? '[]' : '';
  for (const [name, prop] of Object.entries(object.properties ?? {})) {
    const path = `${prefix}${arrayMark}${prefix || arrayMark ? '.' : ''}${name}`.replace(/^\./, '');
    const optional = object.required?.includes(name) ? '' : ' (optional)';
    const nested = prop.properties ?? (prop.type === 'array' ? prop.items?.properties : undefined) ?? prop.anyOf?.find((a) => a.properties)?.properties;
    const shownType = nested && depth < 2 ? (prop.type === 'array' ? 'array of objects' : 'object') : typeOf(prop);
    rows.push(`| \`${path}\` | ${cell(shownType)}${optional} | ${cell(prop.description ?? '')} |`);
    if (nested && depth < 2) {
      const inner: Schema = prop.properties ? prop : prop.type === 'array' ? (prop.items as Schema) : (prop.anyOf?.find((a) => a.properties) as Schema);
      rows.push(...fieldRows(prop.type === 'array' ? { type: 'array', items: inner } : inner, path, depth + 1));
    }
  }
  return rows;
}

export function renderApi(openapiYaml: string): string {
  const doc = parseYaml(openapiYaml) as { info: { title: string; description?: string }; paths: Record<string, Record<string, Operation>> };
  const out: string[] = [
    '<!-- Generated from openapi/openapi.yaml by `npm run docs`; do not edit by hand. -->',
    '# HTTP API',
    '',
    doc.info.description ?? '',
    '',
    'JSON everywhere except `/metrics` (Prometheus text). Every error is `{"error": "<code>", "message": "..."}`.',
    'Routes marked **token** need `Authorization: Bearer <token>` when the sidecar has one',
    '(`--api-token-file`; required when `--listen` is not loopback); a missing or wrong token gets `401`',
    'with `WWW-Authenticate: Bearer`. The machine-readable spec is `openapi/openapi.yaml`, also served',
    'at `GET /openapi.json`.',
    '',
    '| route | summary |',
    '|---|---|',
  ];
  const ops: Array<[string, string, Operation]> = [];
  for (const [path, byMethod] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(byMethod)) ops.push([method.toUpperCase(), path, op]);
  for (const [method, path, op] of ops) {
    // GitHub's heading anchor: punctuation (the path's slashes) is dropped, not turned into a hyphen.
    const anchor = `${method} ${path}`
      .toLowerCase()
      .replace(/[^a-z0-9 _-]/g, '')
      .replace(/ /g, '-');
    out.push(`| [\`${method} ${path}\`](#${anchor}) | ${cell(op.summary ?? '')}${op.security ? ' (**token**)' : ''} |`);
  }
  out.push('');
  for (const [method, path, op] of ops) {
    out.push(`## ${method} ${path}`, '');
    if (op.summary) out.push(`${op.summary}.`.replace(/\.\.$/, '.'), '');
    if (op.description) out.push(op.description, '');
    if (op.security) out.push('Needs the bearer token (when one is configured).', '');
    const params = op.parameters ?? [];
    if (params.length > 0) {
      out.push('| parameter | in | type | constraints | description |', '|---|---|---|---|---|');
      for (const p of params)
        out.push(
          `| \`${p.name}\`${p.required && p.schema.default === undefined ? ' (required)' : ''} | ${p.in} | ${cell(typeOf(p.schema))} | ${cell(constraints(p.schema))} | ${cell(p.description ?? p.schema.description ?? '')} |`,
        );
      out.push('');
    }
    for (const [status, res] of Object.entries(op.responses ?? {})) {
      const [type, media] = Object.entries(res.content ?? {})[0] ?? [];
      const schema = media?.schema;
      const what = schema?.description ?? (res.description && res.description !== 'Default Response' ? res.description : '');
      const isError = schema?.properties && Object.keys(schema.properties).sort().join() === 'error,message';
      if (isError) {
        out.push(`**${status}**: the error body \`{"error", "message"}\``, '');
        continue;
      }
      out.push(`**${status}**${type ? ` \`${type}\`` : ''}${what ? `: ${what}` : ''}`, '');
      if (schema && (schema.properties || schema.items?.properties)) {
        out.push('| field | type | description |', '|---|---|---|', ...fieldRows(schema), '');
      } else if (schema) {
        out.push(`Body: ${typeOf(schema)}${schema.description && schema.description !== what ? ` (${schema.description})` : ''}.`, '');
      }
    }
  }
  return `${out.join('\n').trimEnd()}\n`;
}
