import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { metaFile } from '../../src/snapstore/local-meta.js';
import { folderDigests } from '../helpers/files.js';
import { eventually, TestCluster } from '../helpers/cluster.js';
import { startTestSidecar } from '../helpers/sidecar.js';

// Hostile and malformed requests against every route the running server documents (its own
// /openapi.json, so routes added later are fuzzed too) plus its hidden ones. Each must get an
// answer (no hang), never a 5xx, and every error must have the {"error","message"} shape. The
// store folder must be byte for byte the same afterwards, and the server must still serve.

const TOKEN = 'fuzz-token-Jw3nQ8sL2vX5';
const BODY_LIMIT = 64 * 1024;
const HIDDEN_ROUTES: Array<[string, string]> = [['GET', '/openapi.json']];
const REQUEST_TIMEOUT_MS = 20_000;

interface Route {
  method: string;
  /** Path with `{param}` placeholders, as OpenAPI writes it. */
  path: string;
  query: Array<{ name: string; schema: Record<string, unknown> }>;
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

const TRAVERSALS = [
  '../../../../etc/passwd',
  '..%2f..%2fetc%2fpasswd',
  '%2e%2e/%2e%2e/etc/passwd',
  '/etc/passwd',
  '.ebs-meta/x',
  'v2/..\\..\\x',
  '\u0000',
  'a'.repeat(5000),
  '....//....//',
  '%00',
  '${jndi:ldap://x}',
  "'; DROP TABLE x; --",
];

/** The store's snapshots and their metadata; heartbeats (members/) change every period by design. */
const storeTree = (dir: string): Record<string, string> =>
  Object.fromEntries(Object.entries(folderDigests(dir)).filter(([name]) => !name.startsWith('members/') && !name.startsWith(`${dirname(metaFile('members/m'))}/`)));

function fill(path: string, value: string): string {
  return path.replace(/\{[^}]+\}/g, encodeURIComponent(value));
}

/** Requests sent, reported at the end so a run shows how much it covered. */
let sent = 0;

async function send(url: string, init: RequestInit): Promise<Answer> {
  sent++;
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** Bytes straight onto a socket, for what fetch refuses to send: bad methods, header abuse, dot segments. */
function raw(port: number, text: string | Buffer, opts: { stall?: boolean } = {}): Promise<Answer> {
  sent++;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms to ${JSON.stringify(text.toString().slice(0, 80))}`));
    }, REQUEST_TIMEOUT_MS);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => undefined); // the server may reset after answering; the answer is what counts
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(all);
      if (!m) return void reject(new Error(`no HTTP answer to ${JSON.stringify(text.toString().slice(0, 80))}: ${JSON.stringify(all.slice(0, 200))}`));
      const head = all.slice(0, all.indexOf('\r\n\r\n'));
      const contentType = /\r\ncontent-type: ([^\r]*)/i.exec(head)?.[1] ?? '';
      let body = all.slice(all.indexOf('\r\n\r\n') + 4);
      if (/\r\ntransfer-encoding: chunked/i.test(head)) body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      resolve({ status: Number(m[1]), contentType, body });
    });
    socket.write(text);
    // Half-close so a request the server is still waiting on ends; Connection: close ends keep-alive.
    // A stalling client keeps its side open and sends nothing more.
    if (!opts.stall) socket.end();
  });
}

function assertErrorShape(a: Answer, what: string): void {
  assert.match(a.contentType, /^application\/json/, `${what}: ${a.status} with content-type ${a.contentType}`);
  const parsed = JSON.parse(a.body) as Record<string, unknown>;
  assert.equal(typeof parsed['error'], 'string', `${what}: ${a.body}`);
  assert.equal(typeof parsed['message'], 'string', `${what}: ${a.body}`);
  assert.deepEqual(Object.keys(parsed).sort(), ['error', 'message'], `${what}: ${a.body}`);
}

/** A rejected request: 4xx with the error shape. */
function assertRejected(a: Answer, what: string, status?: number): void {
  if (status !== undefined) assert.equal(a.status, status, `${what}: ${a.body}`);
  assert.ok(a.status >= 400 && a.status < 500, `${what}: expected 4xx, got ${a.status} ${a.body.slice(0, 300)}`);
  assertErrorShape(a, what);
}

/** A request a route may legitimately accept (an unknown query parameter on a read): never 5xx. */
function assertHandled(a: Answer, what: string): void {
  assert.ok(a.status < 500, `${what}: ${a.status} ${a.body.slice(0, 300)}`);
  if (a.status >= 400) assertErrorShape(a, what);
}

/** A value the declared schema of a query parameter does not allow. */
function invalidFor(schema: Record<string, unknown>): fc.Arbitrary<string> {
  const bad: Array<fc.Arbitrary<string>> = [];
  if (schema['type'] === 'integer' || schema['type'] === 'number') {
    // Not '0x10' or '1e2': ajv's coercion reads them as the integers 16 and 100, which is lenient, not wrong.
    bad.push(fc.constantFrom('abc', '1.5', '1e999', '-1e999', 'NaN', 'Infinity', ' ', '--1', '1,2', '9'.repeat(400)));
    if (typeof schema['minimum'] === 'number') bad.push(fc.integer({ min: -1e9, max: schema['minimum'] - 1 }).map(String));
    if (typeof schema['maximum'] === 'number') bad.push(fc.integer({ min: schema['maximum'] + 1, max: 2 ** 53 }).map(String));
  }
  if (typeof schema['maxLength'] === 'number') bad.push(fc.string({ minLength: schema['maxLength'] + 1, maxLength: schema['maxLength'] + 50 }));
  if (Array.isArray(schema['enum'])) bad.push(fc.string().filter((s) => !(schema['enum'] as unknown[]).includes(s)));
  return bad.length > 0 ? fc.oneof(...bad) : fc.constant('');
}

describe('API fuzz: hostile requests to every route', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let sidecar: Awaited<ReturnType<typeof startTestSidecar>>;
  let port: number;
  let routes: Route[];
  let storeDir: string;
  let before_: Record<string, string>;
  const url = (p: string): string => `${sidecar.url}${p}`;

  before(async () => {
    cluster = await TestCluster.start(1);
    await cluster.etcdctl(['put', '/fuzz/k', 'v']);
    // A sidecar that takes snapshots, so a request slipping past a check would change the store;
    // no schedule or retention runs during the test, so any change is the fuzz's doing.
    sidecar = await startTestSidecar(cluster, 'm1', {
      'api-token': TOKEN,
      'snapshot-leader': 'always',
      'delta-snapshot-period': '0',
      'gc-period': '0',
      'full-snapshot-schedule': '0 0 1 1 *',
      'server-body-limit': `${BODY_LIMIT}`,
      'server-request-timeout': '2s',
      'log-level': 'warn',
    });
    port = Number(new URL(sidecar.url).port);
    storeDir = join(cluster.dir, 'backups');
    await eventually('the start-up full snapshot', async () => sidecar.snapshotter?.lastFull, 60_000);
    before_ = storeTree(storeDir);
    assert.ok(Object.keys(before_).length > 0, 'the store holds a snapshot to protect');

    const spec = (await (await fetch(url('/openapi.json'))).json()) as { paths: Record<string, Record<string, { parameters?: Array<{ in: string; name: string; schema: Record<string, unknown> }> }>> };
    routes = [];
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        routes.push({ method: method.toUpperCase(), path, query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => ({ name: p.name, schema: p.schema })) });
      }
    }
    for (const [method, path] of HIDDEN_ROUTES) routes.push({ method, path, query: [] });
  });
  after(async () => {
    await sidecar?.close();
    await cluster?.stop();
  });

  it('finds the routes to fuzz in the live spec', () => {
    const seen = routes.map((r) => `${r.method} ${r.path}`);
    for (const r of ['GET /healthz', 'GET /readyz', 'GET /status', 'GET /metrics', 'POST /snapshot/full', 'POST /snapshot/delta', 'GET /snapshots']) assert.ok(seen.includes(r), r);
  });

  it('mutating routes: no token, wrong tokens and malformed Authorization headers get 401', async () => {
    const badAuth = fc.oneof(
      fc.constant(undefined),
      fc.string().map((s) => `Bearer ${s}`),
      fc.constantFrom(
        'Bearer',
        'Bearer  ',
        `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`,
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN.slice(1)}`,
        `bearer ${TOKEN.toUpperCase()}`,
        `Bearer ${'A'.repeat(8000)}`,
        `Token ${TOKEN}`,
      ),
      fc.string({ unit: 'grapheme-ascii', maxLength: 200 }),
    );
    for (const route of routes.filter((r) => r.method !== 'GET' && r.method !== 'HEAD')) {
      await fc.assert(
        fc.asyncProperty(badAuth, fc.oneof(fc.constant(''), fc.json(), fc.string()), async (auth, body) => {
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (auth !== undefined) headers['authorization'] = auth;
          let answer: Answer;
          try {
            answer = await send(url(fill(route.path, 'x')), { method: route.method, headers, body });
          } catch (err) {
            // fetch itself refuses header values it cannot send (non-Latin-1): nothing reached the server.
            if (err instanceof TypeError && /header|ByteString/i.test(`${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`)) return;
            throw err;
          }
          assertRejected(answer, `${route.method} ${route.path} with Authorization ${JSON.stringify(auth?.slice(0, 40))}`, 401);
        }),
        { numRuns: 40 },
      );
    }
  });

  it('mutating routes with the right token but a malformed, oversized or foreign body are refused before the handler runs', async () => {
    const cases: Array<{ what: string; headers: Record<string, string>; body: string | Buffer; status: number }> = [
      { what: 'bad JSON', headers: { 'content-type': 'application/json' }, body: '{"a":', status: 400 },
      { what: 'JSON with trailing garbage', headers: { 'content-type': 'application/json' }, body: '{} x', status: 400 },
      { what: 'empty JSON body', headers: { 'content-type': 'application/json' }, body: '', status: 400 },
      { what: 'huge JSON body', headers: { 'content-type': 'application/json' }, body: `{"x":"${'a'.repeat(BODY_LIMIT * 4)}"}`, status: 413 },
      { what: 'huge binary body', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(BODY_LIMIT + 1, 0xff), status: 413 },
      { what: 'XML', headers: { 'content-type': 'application/xml' }, body: '<a/>', status: 415 },
      { what: 'form', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1', status: 415 },
      { what: 'multipart', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x--', status: 415 },
      { what: 'garbage content type', headers: { 'content-type': '\u00ff/\u00fe' }, body: '{}', status: 415 },
    ];
    for (const route of routes.filter((r) => r.method === 'POST')) {
      for (const c of cases) {
        const answer = await send(url(fill(route.path, 'x')), { method: 'POST', headers: { ...c.headers, authorization: `Bearer ${TOKEN}` }, body: c.body });
        assertRejected(answer, `${route.path} ${c.what}`, c.status);
      }
      await fc.assert(
        fc.asyncProperty(
          fc.string({ minLength: 1 }).filter((s) => {
            try {
              JSON.parse(s);
              return false;
            } catch {
              return true;
            }
          }),
          async (notJson) => {
            const answer = await send(url(fill(route.path, 'x')), { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: notJson });
            assertRejected(answer, `${route.path} body ${JSON.stringify(notJson.slice(0, 40))}`, 400);
          },
        ),
        { numRuns: 40 },
      );
    }
  });

  it('declared query parameters with values their schema forbids get 400', async () => {
    for (const route of routes.filter((r) => r.query.length > 0)) {
      for (const param of route.query) {
        await fc.assert(
          fc.asyncProperty(invalidFor(param.schema), async (value) => {
            // With the token, so a mutating route's validation (not its auth check) is what answers.
            const answer = await send(`${url(fill(route.path, 'x'))}?${param.name}=${encodeURIComponent(value)}`, { method: route.method, headers: { authorization: `Bearer ${TOKEN}` } });
            assertRejected(answer, `${route.method} ${route.path}?${param.name}=${JSON.stringify(value.slice(0, 40))}`, 400);
          }),
          { numRuns: 40 },
        );
      }
    }
  });

  it('read routes with hostile query strings, traversal values and repeated keys never fail with 5xx', async () => {
    const key = fc.oneof(fc.constantFrom('limit', 'pageToken', 'name', 'wait', 'revision', '__proto__', 'constructor', 'a[b]', 'x'.repeat(300)), fc.string({ maxLength: 20 }));
    const value = fc.oneof(fc.constantFrom(...TRAVERSALS), fc.string({ maxLength: 100 }), fc.integer().map(String));
    for (const route of routes.filter((r) => r.method === 'GET')) {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 6 }), async (pairs) => {
          const qs = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
          const answer = await send(`${url(fill(route.path, pairs[0]?.[1] ?? 'x'))}?${qs}`, { method: 'GET' });
          assertHandled(answer, `GET ${route.path}?${qs.slice(0, 80)}`);
        }),
        { numRuns: 25 },
      );
    }
  });

  it('unknown methods on every route, with and without the token, get 4xx', async () => {
    // A path may have several methods (GET and POST /initialize): only the ones it lacks are fuzzed.
    const methodsOf = new Map<string, Set<string>>();
    for (const r of routes) methodsOf.set(r.path, new Set([...(methodsOf.get(r.path) ?? []), r.method, ...(r.method === 'GET' ? ['HEAD'] : [])]));
    for (const route of routes) {
      for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'POST', 'GET']) {
        if (methodsOf.get(route.path)?.has(method)) continue;
        for (const auth of [undefined, `Bearer ${TOKEN}`]) {
          const headers: Record<string, string> = auth ? { authorization: auth } : {};
          // A read method on a route that only exists as POST is a 404; a mutation on a read route is
          // a 401 without the token and a 404 with it.
          const answer = await send(url(fill(route.path, 'x')), { method, headers });
          assertRejected(answer, `${method} ${route.path} ${auth ? 'with' : 'without'} token`);
        }
      }
    }
  });

  it('header abuse, bad methods, dot segments and broken framing get a 4xx in the error shape', async () => {
    const paths = [...new Set(routes.map((r) => fill(r.path, 'x')))];
    const target = paths[0] ?? '/status';
    const requests: Array<[string, string | Buffer]> = [
      ['oversized header', `GET ${target} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`],
      ['thousands of headers', `GET ${target} HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\nConnection: close\r\n\r\n`],
      ['space in a header name', `GET ${target} HTTP/1.1\r\nHost: x\r\nBad Header: y\r\nConnection: close\r\n\r\n`],
      ['NUL in a header value', `GET ${target} HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\nConnection: close\r\n\r\n`],
      ['unknown method', `FROB ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
      ['not HTTP at all', 'hello there\r\n\r\n'],
      ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])],
      ['content-length not a number', `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n`],
      ['two different content-lengths', `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab`],
      ['content-length and chunked', `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`],
      [
        'broken chunk size',
        `POST ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      ],
      [
        'chunked body over the limit',
        `POST ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(BODY_LIMIT * 2).toString(16)}\r\n${'a'.repeat(BODY_LIMIT * 2)}\r\n0\r\n\r\n`,
      ],
      ['absolute-form target to another host', `GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`],
    ];
    for (const p of paths) {
      for (const t of TRAVERSALS.slice(0, 6)) {
        requests.push([`dot segments ${p} ${t}`, `GET ${p}/${t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
        requests.push([
          `dot segments POST ${p} ${t}`,
          `POST /../${p}/../${t} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{`,
        ]);
      }
    }
    for (const [what, text] of requests) {
      const answer = await raw(port, text);
      assertRejected(answer, what);
    }
    // The chunked body over the limit is refused as too large, not parsed.
    const big = await raw(port, requests.find(([w]) => w === 'chunked body over the limit')?.[1] as string);
    assertRejected(big, 'chunked body over the limit', 413);
  });

  it('clients that stall mid-request get 408 in the error shape instead of holding the connection', async () => {
    const stalled: Array<[string, string]> = [
      ['body never completes', `POST /snapshot/full HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":`],
      ['headers never complete', `GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: a`],
    ];
    for (const [what, text] of stalled) {
      const answer = await raw(port, text, { stall: true });
      assertRejected(answer, what, 408);
    }
  });

  it('the server still serves, the store is byte for byte unchanged, and the token used above was the real one', async (t) => {
    t.diagnostic(`${sent} hostile requests to ${routes.length} routes`);
    assert.equal((await send(url('/healthz'), {})).status, 200);
    assert.equal((await send(url('/status'), {})).status, 200);
    assert.deepEqual(storeTree(storeDir), before_, 'the store changed during the fuzz');
    const taken = await send(url('/snapshot/full'), { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(taken.status, 201, taken.body);
    assert.notDeepEqual(storeTree(storeDir), before_, 'an authorized snapshot changes the store (so the comparison above can see changes)');
  });
});
