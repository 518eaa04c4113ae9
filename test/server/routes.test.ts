import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { InitStatus } from '../../src/initializer/initializer.js';
import type { LeadershipView } from '../../src/cluster/backup-leadership.js';
import type { ClusterStatus, EndpointStatus } from '../../src/etcd/status.js';
import { createLogger } from '../../src/logger.js';
import { buildServer, type App, type ServerDeps, type ServerOptions, type SnapshotApi } from '../../src/server/app.js';
import { Metrics } from '../../src/server/metrics.js';
import { SnapshotBusyError, listSnapshots } from '../../src/snapshot/snapshotter.js';
import { CompactBusyError, CompactRefusedError } from '../../src/restore/compact.js';
import { DefragBusyError, DefragRefusedError } from '../../src/defrag/defragmenter.js';
import type { DefragApi } from '../../src/server/deps.js';
import type { SnapshotRecord } from '../../src/snapshot/record.js';
import { LocalStore } from '../../src/snapstore/local.js';
import { StoreError } from '../../src/snapstore/types.js';

// Every route is exercised through app.inject() against fakes of ServerDeps: no etcd, no socket
// (except a loopback stand-in for the backup leader, since forwarding uses fetch()). The snapshot
// listing reads a real local-folder store, so pagination is checked against real object names.

const TOKEN = 'routes-test-token-0123456789';

const RECORD: SnapshotRecord = {
  name: 'v2/Full-00000000-00000042-1700000000.gz',
  kind: 'full',
  startRevision: 0,
  lastRevision: 42,
  createdAt: '2023-11-14T22:13:20.000Z',
  compression: 'gzip',
  size: 123,
  sha256: 'ab'.repeat(32),
  uncompressedSize: 4096,
  durationMs: 17,
};

const DELTA_RECORD: SnapshotRecord = { ...RECORD, name: 'v2/Incr-00000043-00000050-1700000005.gz', kind: 'delta', startRevision: 43, lastRevision: 50, events: 8 };

const SELF_STATUS: EndpointStatus = { endpoint: 'http://127.0.0.1:2379', reachable: true, latencyMs: 3, memberId: 'a1', clusterId: 'c1', leaderId: 'a1', revision: 60, alarms: [] };

const CLUSTER: ClusterStatus = {
  clusterId: 'c1',
  leader: { id: 'a1', name: 'm1' },
  members: [
    { id: 'a1', name: 'm1', peerURLs: ['http://127.0.0.1:2380'], clientURLs: ['http://127.0.0.1:2379'], isLearner: false, started: true, isLeader: true, healthy: true, status: SELF_STATUS },
    { id: 'b2', name: 'm2', peerURLs: ['http://127.0.0.2:2380'], clientURLs: ['http://127.0.0.2:2379'], isLearner: true, started: true, isLeader: false, healthy: false, error: 'no leader' },
  ],
  voters: 1,
  healthyVoters: 1,
  hasQuorum: true,
  alarms: [],
  checkedAt: '2026-01-01T00:00:00.000Z',
  durationMs: 12,
};

/** Records calls so a test can show a refused request never reached the snapshotter. */
interface Calls {
  takeFull: number;
  takeDelta: number;
  list: number;
}

function fakeSnapshots(overrides: Partial<SnapshotApi> = {}): SnapshotApi & { calls: Calls } {
  const calls: Calls = { takeFull: 0, takeDelta: 0, list: 0 };
  const api: SnapshotApi & { calls: Calls } = {
    calls,
    unavailable: () => undefined,
    deltasEnabled: true,
    takeFull: async () => RECORD,
    takeDelta: async () => DELTA_RECORD,
    compact: async () => RECORD,
    list: async () => [],
    state: () => ({ takesSnapshots: true }),
    ...overrides,
  };
  // Count around whatever the override does.
  const takeFull = api.takeFull.bind(api);
  const takeDelta = api.takeDelta.bind(api);
  const list = api.list.bind(api);
  api.takeFull = () => (calls.takeFull++, takeFull());
  api.takeDelta = () => (calls.takeDelta++, takeDelta());
  api.list = () => (calls.list++, list());
  return api;
}

function fakeDeps(overrides: Partial<ServerDeps> = {}): ServerDeps {
  return {
    self: { name: 'm1', clientURLs: ['http://127.0.0.1:2379'] },
    clusterStatus: async () => structuredClone(CLUSTER),
    probeSelf: async () => ({ ...SELF_STATUS }),
    endpoints: () => ['http://127.0.0.1:2379'],
    storeHealth: () => undefined,
    metrics: new Metrics(),
    snapshots: fakeSnapshots(),
    ...overrides,
  };
}

const apps: App[] = [];
async function build(deps: ServerDeps, opts: Partial<ServerOptions> = {}): Promise<App> {
  const app = await buildServer(deps, { bodyLimit: 1024, logger: createLogger('silent'), ...opts });
  apps.push(app);
  return app;
}
after(async () => {
  await Promise.all(apps.map((a) => a.close()));
});

/** The error shape of src/server/errors.ts, and nothing else in the body. */
function assertError(res: { statusCode: number; json(): unknown }, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, JSON.stringify(res.json()));
  const body = res.json() as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
  assert.equal(body.error, code);
  assert.equal(typeof body.message, 'string');
  if (message) assert.match(body.message as string, message);
}

describe('routes: errors common to every route', () => {
  it('an unknown route is 404 not_found naming method and path, without the query', async () => {
    const app = await build(fakeDeps());
    assertError(await app.inject({ method: 'GET', url: '/nope?x=1' }), 404, 'not_found', /^no route GET \/nope$/);
    assertError(await app.inject({ method: 'DELETE', url: '/snapshots' }), 404, 'not_found', /DELETE \/snapshots/);
  });

  it('a handler that throws is 500 internal with its message', async () => {
    const app = await build(fakeDeps({ clusterStatus: async () => Promise.reject(new Error('fan-out exploded')) }));
    assertError(await app.inject({ method: 'GET', url: '/status' }), 500, 'internal', /fan-out exploded/);
  });

  it('a POST with malformed JSON is 400 bad_request and never reaches the snapshotter', async () => {
    const snapshots = fakeSnapshots();
    const app = await build(fakeDeps({ snapshots }));
    const res = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { 'content-type': 'application/json' }, payload: '{"not json' });
    assertError(res, 400, 'bad_request');
    assert.equal(snapshots.calls.takeFull, 0);
  });

  it('a POST body of an unsupported type is 415, one over --server-body-limit is 413', async () => {
    const snapshots = fakeSnapshots();
    const app = await build(fakeDeps({ snapshots }));
    assertError(await app.inject({ method: 'POST', url: '/snapshot/full', headers: { 'content-type': 'application/xml' }, payload: '<a/>' }), 415, 'unsupported_media_type');
    const big = JSON.stringify({ pad: 'x'.repeat(2048) });
    assertError(await app.inject({ method: 'POST', url: '/snapshot/full', headers: { 'content-type': 'application/json' }, payload: big }), 413, 'body_too_large');
    assert.equal(snapshots.calls.takeFull, 0);
  });

  it('the POST routes take no body: unknown JSON fields are ignored, not refused', async () => {
    const app = await build(fakeDeps());
    const res = await app.inject({ method: 'POST', url: '/snapshot/full', payload: { force: true, anything: [1, 2] } });
    assert.equal(res.statusCode, 201);
    assert.equal(res.json().name, RECORD.name);
  });

  it('secrets handed to scrub never leave in a response body, even inside an error message', async () => {
    const snapshots = fakeSnapshots({ takeFull: async () => Promise.reject(new Error('store said: bad key sekrit-value')) });
    const app = await build(fakeDeps({ snapshots }), { scrub: (t) => t.replaceAll('sekrit-value', '<redacted>') });
    const res = await app.inject({ method: 'POST', url: '/snapshot/full' });
    assertError(res, 500, 'snapshot_failed', /bad key <redacted>/);
    assert.ok(!res.body.includes('sekrit-value'));
  });
});

describe('routes: bearer-token auth (src/server/auth.ts)', () => {
  const mutating = [
    ['POST', '/snapshot/full'],
    ['POST', '/snapshot/delta'],
    ['POST', '/initialize'],
  ] as const;

  it('every POST without a token is 401 with the Bearer challenge, and nothing runs', async () => {
    const snapshots = fakeSnapshots();
    let starts = 0;
    const initializer = {
      start: async (): Promise<InitStatus> => (starts++, { state: 'Successful', rounds: 1, generation: 1 }),
      status: (): InitStatus => ({ state: 'New', rounds: 0, generation: 1 }),
      etcdConfig: () => undefined,
    };
    const app = await build(fakeDeps({ snapshots, initializer }), { apiToken: TOKEN });
    for (const [method, url] of mutating) {
      const res = await app.inject({ method, url });
      assertError(res, 401, 'unauthorized', /Authorization: Bearer/);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="etcd-backup-sidecar"', url);
    }
    assert.deepEqual(snapshots.calls, { takeFull: 0, takeDelta: 0, list: 0 });
    assert.equal(starts, 0);
  });

  it('a wrong token is 401 invalid_token; a header that is not "Bearer <token>" is 401 without it', async () => {
    const snapshots = fakeSnapshots();
    const app = await build(fakeDeps({ snapshots }), { apiToken: TOKEN });
    const wrong = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { authorization: `Bearer ${TOKEN}x` } });
    assertError(wrong, 401, 'unauthorized', /does not match/);
    assert.match(String(wrong.headers['www-authenticate']), /error="invalid_token"/);
    const basic = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { authorization: `Basic ${TOKEN}` } });
    assertError(basic, 401, 'unauthorized', /not "Bearer <token>"/);
    assert.doesNotMatch(String(basic.headers['www-authenticate']), /invalid_token/);
    assert.equal(snapshots.calls.takeFull, 0);
  });

  it('the token is checked before the body is parsed: malformed JSON without a token is 401, not 400', async () => {
    const app = await build(fakeDeps(), { apiToken: TOKEN });
    const res = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { 'content-type': 'application/json' }, payload: '{' });
    assertError(res, 401, 'unauthorized');
  });

  it('the right token (scheme in any case) lets the request through', async () => {
    const app = await build(fakeDeps(), { apiToken: TOKEN });
    assert.equal((await app.inject({ method: 'POST', url: '/snapshot/full', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 201);
    assert.equal((await app.inject({ method: 'POST', url: '/snapshot/delta', headers: { authorization: `bearer ${TOKEN}` } })).statusCode, 201);
  });

  it('reading routes need no token', async () => {
    const app = await build(
      fakeDeps({ initializer: { start: async () => ({ state: 'New', rounds: 0, generation: 1 }), status: () => ({ state: 'New', rounds: 0, generation: 1 }), etcdConfig: () => undefined } }),
      { apiToken: TOKEN },
    );
    for (const url of ['/healthz', '/readyz', '/status', '/metrics', '/snapshots', '/snapshot/latest', '/initialize', '/openapi.json']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
    }
  });

  it('without a token configured, POSTs are accepted as they come', async () => {
    const app = await build(fakeDeps());
    assert.equal((await app.inject({ method: 'POST', url: '/snapshot/full' })).statusCode, 201);
  });

  it('the OpenAPI document marks every POST as needing the bearer token, with a 401 answer', async () => {
    const app = await build(fakeDeps());
    const spec = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { security?: unknown; responses?: Record<string, unknown> }>> }>();
    const posts = Object.entries(spec.paths).flatMap(([path, ops]) => (ops.post ? [[path, ops.post] as const] : []));
    assert.deepEqual(posts.map(([p]) => p).sort(), ['/initialize', '/snapshot/compact', '/snapshot/delta', '/snapshot/full']);
    for (const [path, op] of posts) {
      assert.deepEqual(op.security, [{ bearerAuth: [] }], path);
      assert.ok(op.responses?.['401'], path);
    }
    assert.equal(spec.paths['/snapshots']?.get?.security, undefined);
  });
});

describe('routes: /healthz and /readyz', () => {
  it('/healthz is 200 {status: ok} even when etcd does not answer', async () => {
    const app = await build(fakeDeps({ probeSelf: async () => Promise.reject(new Error('must not be asked')) }));
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: 'ok' });
  });

  it('/readyz is 200 when the member answers and follows a leader', async () => {
    const app = await build(fakeDeps());
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.ready, true);
    assert.deepEqual(
      body.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok]),
      [
        ['etcd-reachable', true],
        ['etcd-has-leader', true],
        ['etcd-no-alarm', true],
      ],
    );
  });

  it('/readyz is 503 naming the failing check: unreachable, no leader, or an alarm', async () => {
    const down = await build(fakeDeps({ probeSelf: async () => ({ endpoint: 'http://127.0.0.1:2379', reachable: false, latencyMs: 2000, error: 'deadline exceeded', alarms: [] }) }));
    const res = await down.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 503);
    assert.equal(res.json().ready, false);
    assert.deepEqual(res.json().checks, [{ name: 'etcd-reachable', ok: false, message: 'http://127.0.0.1:2379: deadline exceeded' }]);

    const leaderless = await build(fakeDeps({ probeSelf: async () => ({ ...SELF_STATUS, leaderId: '0' }) }));
    const res2 = await leaderless.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res2.statusCode, 503);
    assert.deepEqual(res2.json().checks[1], { name: 'etcd-has-leader', ok: false, message: 'the local member has no leader' });

    const full = await build(fakeDeps({ probeSelf: async () => ({ ...SELF_STATUS, alarms: ['memberID:161 alarm:NOSPACE '] }) }));
    const res3 = await full.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res3.statusCode, 503);
    assert.deepEqual(res3.json().checks[2], { name: 'etcd-no-alarm', ok: false, message: 'alarms: NOSPACE (writes are refused: make room and disarm, or run with --auto-recover-nospace)' });
  });
});

describe('routes: /status', () => {
  it('joins this member, the cluster, the endpoints and the backup state; role unknown without an election', async () => {
    const createdAt = new Date(Date.now() - 60_000).toISOString();
    const snapshots = fakeSnapshots({ state: () => ({ takesSnapshots: true, lastFull: { ...RECORD, createdAt, durationMs: 1000 }, uploadedRevision: 42, etcdRevision: 50 }) });
    const app = await build(fakeDeps({ snapshots }));
    const res = await app.inject({ method: 'GET', url: '/status' });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.deepEqual(body.member, { name: 'm1', clientURLs: ['http://127.0.0.1:2379'], id: 'a1', isLearner: false, isLeader: true, healthy: true });
    assert.equal(body.role, 'unknown');
    assert.equal(body.election, undefined);
    assert.deepEqual(body.cluster, { id: 'c1', leader: { id: 'a1', name: 'm1' }, voters: 1, healthyVoters: 1, hasQuorum: true, alarms: [] });
    assert.equal(body.members.length, 2);
    assert.equal(body.members[1].error, 'no leader');
    assert.deepEqual(body.endpoints, ['http://127.0.0.1:2379']);
    assert.equal(body.store, undefined);
    // The lag is against the higher of the snapshotter's and the member's own revision (60).
    assert.equal(body.backup.revisionLag, 60 - 42);
    assert.equal(body.backup.lastFull.uploadedAt, new Date(Date.parse(createdAt) + 1000).toISOString());
    assert.ok(body.backup.secondsSinceLastUpload >= 58 && body.backup.secondsSinceLastUpload < 120, String(body.backup.secondsSinceLastUpload));
  });

  it('finds this member by client URL when the member list has no name for it, and shows the store and election', async () => {
    const cluster = structuredClone(CLUSTER);
    (cluster.members[0] as { name: string }).name = '';
    const view: LeadershipView = { role: 'leader', reason: 'the own member leads', mode: 'elect', roleChanges: 1, apiURL: 'http://127.0.0.1:8080', heartbeats: [] };
    const store = { url: 'file:///tmp/x', healthy: true, latencyMs: 1, checkedAt: '2026-01-01T00:00:00.000Z' };
    const app = await build(fakeDeps({ clusterStatus: async () => cluster, cluster: () => view, storeHealth: () => store }));
    const body = (await app.inject({ method: 'GET', url: '/status' })).json();
    assert.equal(body.member.id, 'a1');
    assert.equal(body.role, 'leader');
    assert.deepEqual(body.election, { mode: 'elect', reason: 'the own member leads', roleChanges: 1, apiURL: 'http://127.0.0.1:8080', heartbeats: [] });
    assert.deepEqual(body.store, store);
  });

  it('a member missing from the cluster status is reported unhealthy, not an error', async () => {
    const app = await build(fakeDeps({ self: { name: 'm9', clientURLs: ['http://10.9.9.9:2379'] } }));
    const body = (await app.inject({ method: 'GET', url: '/status' })).json();
    assert.deepEqual(body.member, { name: 'm9', clientURLs: ['http://10.9.9.9:2379'], isLeader: false, healthy: false });
  });
});

describe('routes: /metrics and /openapi.json', () => {
  it('/metrics is Prometheus text with the sidecar metrics', async () => {
    const metrics = new Metrics();
    metrics.recordClusterStatus(CLUSTER);
    const app = await build(fakeDeps({ metrics }));
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.match(res.body, /^etcd_backup_sidecar_cluster_has_quorum 1$/m);
    assert.match(res.body, /^etcd_backup_sidecar_member_healthy\{member="m2",member_id="b2"\} 0$/m);
  });

  it('/openapi.json lists every route', async () => {
    const app = await build(fakeDeps());
    const spec = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{ openapi: string; paths: Record<string, unknown> }>();
    assert.equal(spec.openapi, '3.0.3');
    assert.deepEqual(Object.keys(spec.paths).sort(), [
      '/config',
      '/healthz',
      '/initialize',
      '/metrics',
      '/readyz',
      '/snapshot/compact',
      '/snapshot/delta',
      '/snapshot/full',
      '/snapshot/latest',
      '/snapshots',
      '/status',
    ]);
  });
});

describe('routes: POST /snapshot/full and /snapshot/delta', () => {
  it('201 with the record of the snapshot taken', async () => {
    const app = await build(fakeDeps());
    const full = await app.inject({ method: 'POST', url: '/snapshot/full' });
    assert.equal(full.statusCode, 201);
    assert.deepEqual(full.json(), RECORD);
    const delta = await app.inject({ method: 'POST', url: '/snapshot/delta' });
    assert.equal(delta.statusCode, 201);
    assert.deepEqual(delta.json(), DELTA_RECORD);
  });

  it('a delta with nothing new is 200 {uploaded: false}', async () => {
    const app = await build(fakeDeps({ snapshots: fakeSnapshots({ takeDelta: async () => undefined }) }));
    const res = await app.inject({ method: 'POST', url: '/snapshot/delta' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { uploaded: false, message: 'no new events since the last snapshot' });
  });

  it('503 not_backup_leader with the reason when this sidecar takes no snapshots and knows no leader', async () => {
    const snapshots = fakeSnapshots({ unavailable: () => 'the own member is a follower and no leader heartbeat is fresh' });
    const app = await build(fakeDeps({ snapshots }));
    for (const url of ['/snapshot/full', '/snapshot/delta']) assertError(await app.inject({ method: 'POST', url }), 503, 'not_backup_leader', /no leader heartbeat/);
    assert.deepEqual(snapshots.calls, { takeFull: 0, takeDelta: 0, list: 0 });
  });

  it('409 deltas_disabled when --delta-snapshot-period=0', async () => {
    const snapshots = fakeSnapshots({ deltasEnabled: false });
    const app = await build(fakeDeps({ snapshots }));
    assertError(await app.inject({ method: 'POST', url: '/snapshot/delta' }), 409, 'deltas_disabled');
    assert.equal(snapshots.calls.takeDelta, 0);
  });

  it('maps failures: busy 409 snapshot_running, store 502 store_failed, anything else 500 snapshot_failed', async () => {
    const cases: [Error, number, string][] = [
      [new SnapshotBusyError('full'), 409, 'snapshot_running'],
      [new StoreError('unreachable', 's3://b/p', 'connection reset'), 502, 'store_failed'],
      [new Error('trailer mismatch'), 500, 'snapshot_failed'],
    ];
    for (const [err, status, code] of cases) {
      const app = await build(fakeDeps({ snapshots: fakeSnapshots({ takeFull: async () => Promise.reject(err), takeDelta: async () => Promise.reject(err) }) }));
      assertError(await app.inject({ method: 'POST', url: '/snapshot/full' }), status, code, new RegExp(err.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assertError(await app.inject({ method: 'POST', url: '/snapshot/delta' }), status, code);
    }
  });
});

describe('routes: POST /defrag', () => {
  const REPORT = {
    reason: 'requested through the API',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:00:01.000Z',
    members: [{ id: 'a1', name: 'm1', outcome: 'defragmented' as const, raftLeader: true, dbSizeBefore: 100, dbSizeAfter: 40, durationMs: 900 }],
  };
  function fakeDefrag(overrides: Partial<DefragApi> = {}): DefragApi & { asked: (string | undefined)[] } {
    const asked: (string | undefined)[] = [];
    return {
      asked,
      unavailable: () => undefined,
      run: async (member) => (asked.push(member), REPORT),
      status: () => ({ running: false, schedule: 'off', lastByMember: [] }),
      ...overrides,
    };
  }

  it('200 with the round report; ?member= reaches the round; /status shows the defragmentation state', async () => {
    const defrag = fakeDefrag();
    const app = await build(fakeDeps({ defrag }));
    const res = await app.inject({ method: 'POST', url: '/defrag?member=m2' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), REPORT);
    assert.deepEqual(defrag.asked, ['m2']);
    assert.deepEqual((await app.inject({ method: 'GET', url: '/status' })).json().defrag, { running: false, schedule: 'off', lastByMember: [] });
  });

  it('409 defrag_running or defrag_refused with the reason; 503 off the leader; 400 for an empty member name; 500 defrag_failed otherwise', async () => {
    const cases: [Error, number, string][] = [
      [new DefragBusyError(), 409, 'defrag_running'],
      [new DefragRefusedError('defragmentation refused: not every member is healthy (m2: unreachable)'), 409, 'defrag_refused'],
      [new Error('etcd exited'), 500, 'defrag_failed'],
    ];
    for (const [err, status, code] of cases) {
      const app = await build(fakeDeps({ defrag: fakeDefrag({ run: async () => Promise.reject(err) }) }));
      assertError(await app.inject({ method: 'POST', url: '/defrag' }), status, code);
    }
    const follower = await build(fakeDeps({ defrag: fakeDefrag({ unavailable: () => 'not the backup leader' }) }));
    assertError(await follower.inject({ method: 'POST', url: '/defrag' }), 503, 'not_backup_leader');
    const app = await build(fakeDeps({ defrag: fakeDefrag() }));
    assertError(await app.inject({ method: 'POST', url: '/defrag?member=' }), 400, 'bad_request');
  });

  it('needs the API token like every mutating route', async () => {
    const app = await build(fakeDeps({ defrag: fakeDefrag() }), { apiToken: TOKEN });
    assert.equal((await app.inject({ method: 'POST', url: '/defrag' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'POST', url: '/defrag', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200);
  });
});

describe('routes: POST /snapshot/compact', () => {
  it('201 with the new full snapshot; 409 when there is nothing to compact or one runs; 503 off the leader; 500 compact_failed otherwise', async () => {
    assert.deepEqual((await (await build(fakeDeps())).inject({ method: 'POST', url: '/snapshot/compact' })).json(), RECORD);
    const cases: [Error, number, string][] = [
      [new CompactRefusedError('the latest chain is v2/Full-x alone: nothing to compact'), 409, 'nothing_to_compact'],
      [new CompactBusyError(), 409, 'compact_running'],
      [new Error('etcd exited'), 500, 'compact_failed'],
    ];
    for (const [err, status, code] of cases) {
      const app = await build(fakeDeps({ snapshots: fakeSnapshots({ compact: async () => Promise.reject(err) }) }));
      assertError(await app.inject({ method: 'POST', url: '/snapshot/compact' }), status, code);
    }
    const follower = await build(fakeDeps({ snapshots: fakeSnapshots({ unavailable: () => 'not the backup leader' }) }));
    assertError(await follower.inject({ method: 'POST', url: '/snapshot/compact' }), 503, 'not_backup_leader');
  });
});

/** A stand-in for the backup leader's sidecar: records what it is sent, answers what it is told. */
async function fakeLeader(answer: (url: string) => { status: number; body: string }): Promise<{ url: string; seen: { method: string; url: string; headers: IncomingHttpHeaders }[]; server: Server }> {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const a = answer(req.url ?? '');
    res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

describe('routes: forwarding to the backup leader', () => {
  let leader: Awaited<ReturnType<typeof fakeLeader>>;
  before(async () => {
    leader = await fakeLeader((url) =>
      url.startsWith('/snapshot/latest')
        ? { status: 200, body: JSON.stringify({ full: null, deltas: [], lastRevision: 0, contiguous: false, gaps: [], strandedDeltas: 0 }) }
        : url === '/snapshot/delta'
          ? { status: 200, body: 'not json' }
          : { status: 201, body: JSON.stringify(RECORD) },
    );
  });
  after(() => new Promise<void>((resolve) => leader.server.close(() => resolve())));

  it("relays POST /snapshot/full to the leader with this sidecar's name and the caller's token, and its answer back", async () => {
    const snapshots = fakeSnapshots({ forwardTo: () => ({ url: leader.url, name: 'm2' }) });
    const app = await build(fakeDeps({ snapshots }), { apiToken: TOKEN });
    leader.seen.length = 0;
    const res = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.statusCode, 201);
    assert.equal(res.headers['x-ebs-forwarded-to'], 'm2');
    assert.deepEqual(res.json(), RECORD);
    assert.equal(leader.seen.length, 1);
    assert.equal(leader.seen[0]?.method, 'POST');
    assert.equal(leader.seen[0]?.headers['x-ebs-forwarded-by'], 'm1');
    assert.equal(leader.seen[0]?.headers.authorization, `Bearer ${TOKEN}`);
  });

  // An awaited fastify reply resolves to undefined: the handler once went on after relaying (it
  // asked unavailable(), could run takeFull() or list the store, and fastify logged "Reply was
  // already sent").
  it('a forwarded request runs nothing here: no snapshot, no store listing', async () => {
    const snapshots = fakeSnapshots({ forwardTo: () => ({ url: leader.url, name: 'm2' }) });
    const app = await build(fakeDeps({ snapshots }));
    assert.equal((await app.inject({ method: 'POST', url: '/snapshot/full' })).statusCode, 201);
    assert.equal((await app.inject({ method: 'GET', url: '/snapshot/latest' })).statusCode, 200);
    assert.deepEqual(snapshots.calls, { takeFull: 0, takeDelta: 0, list: 0 });
  });

  it('forwards GET /snapshot/latest, but answers GET /snapshots from the store here', async () => {
    const snapshots = fakeSnapshots({ forwardTo: () => ({ url: leader.url, name: 'm2' }) });
    const app = await build(fakeDeps({ snapshots }));
    leader.seen.length = 0;
    const latest = await app.inject({ method: 'GET', url: '/snapshot/latest' });
    assert.equal(latest.statusCode, 200);
    assert.equal(latest.headers['x-ebs-forwarded-to'], 'm2');
    const list = await app.inject({ method: 'GET', url: '/snapshots' });
    assert.equal(list.statusCode, 200);
    assert.deepEqual(
      leader.seen.map((s) => s.url),
      ['/snapshot/latest'],
    );
  });

  it('a leader answering something that is not JSON is 502 bad_leader_answer', async () => {
    const app = await build(fakeDeps({ snapshots: fakeSnapshots({ forwardTo: () => ({ url: leader.url, name: 'm2' }) }) }));
    assertError(await app.inject({ method: 'POST', url: '/snapshot/delta' }), 502, 'bad_leader_answer', /m2 answered 200/);
  });

  it('a leader that does not answer is 503 leader_unreachable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const app = await build(fakeDeps({ snapshots: fakeSnapshots({ forwardTo: () => ({ url, name: 'm3' }) }) }));
    assertError(await app.inject({ method: 'POST', url: '/snapshot/full' }), 503, 'leader_unreachable', /m3/);
  });

  it('a request another sidecar already forwarded is never forwarded again', async () => {
    const app = await build(fakeDeps({ snapshots: fakeSnapshots({ forwardTo: () => ({ url: leader.url, name: 'm2' }) }) }));
    leader.seen.length = 0;
    const res = await app.inject({ method: 'POST', url: '/snapshot/full', headers: { 'x-ebs-forwarded-by': 'm3' } });
    assertError(res, 503, 'not_backup_leader', /forwarded by m3/);
    assert.equal(leader.seen.length, 0);
  });
});

describe('routes: GET /snapshots and /snapshot/latest from a local-folder store', () => {
  let dir: string;
  let store: LocalStore;
  const put = (name: string): Promise<unknown> => store.put(name, Readable.from([Buffer.from(name)]));
  // Newest first by last revision, then by name (descending) within one revision.
  const NEWEST_FIRST = [
    'v2/Incr-00000045-00000050-1700000030.gz',
    'v2/Incr-00000035-00000040-1700000027.gz',
    'v2/Incr-00000031-00000040-1700000025.gz',
    'v2/Incr-00000021-00000030-1700000010.gz',
    'v2/Full-00000000-00000030-1700000020.gz',
    'v2/Incr-00000011-00000020-1700000005.zlib',
    'v2/Full-00000000-00000010-1700000000',
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ebs-routes-'));
    store = new LocalStore(dir);
    for (const name of [...NEWEST_FIRST].reverse()) await put(name);
    // Not snapshots: a heartbeat, foreign files, a chunk part: never listed.
    for (const name of ['members/m1.json', 'v2/notes.txt', 'v2/Full-00000000-00000010-1700000000.gz/0', 'v1/Full-00000000-00000099-1700000000']) await put(name);
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const storeDeps = (): ServerDeps => fakeDeps({ snapshots: fakeSnapshots({ list: () => listSnapshots(store) }) });
  type Page = { snapshots: { name: string; kind: string; compression: string; createdAt: string; final: boolean }[]; nextPageToken?: string };

  it('lists every snapshot newest first with what its name says, and nothing else', async () => {
    const app = await build(storeDeps());
    const res = await app.inject({ method: 'GET', url: '/snapshots' });
    assert.equal(res.statusCode, 200);
    const body = res.json<Page>();
    assert.deepEqual(
      body.snapshots.map((s) => s.name),
      NEWEST_FIRST,
    );
    assert.equal(body.nextPageToken, undefined);
    assert.deepEqual(body.snapshots[5], {
      name: 'v2/Incr-00000011-00000020-1700000005.zlib',
      kind: 'delta',
      startRevision: 11,
      lastRevision: 20,
      createdAt: '2023-11-14T22:13:25.000Z',
      compression: 'zlib',
      final: false,
    });
    assert.equal(body.snapshots[6]?.compression, 'none');
  });

  it('pages with limit and pageToken: every snapshot once, in order, and no token after the last page', async () => {
    const app = await build(storeDeps());
    const seen: string[] = [];
    const sizes: number[] = [];
    let token: string | undefined;
    for (let i = 0; i < 10; i++) {
      const res = await app.inject({ method: 'GET', url: '/snapshots', query: { limit: '3', ...(token ? { pageToken: token } : {}) } });
      assert.equal(res.statusCode, 200);
      const body = res.json<Page>();
      seen.push(...body.snapshots.map((s) => s.name));
      sizes.push(body.snapshots.length);
      token = body.nextPageToken;
      if (!token) break;
    }
    assert.deepEqual(sizes, [3, 3, 1]);
    assert.deepEqual(seen, NEWEST_FIRST);
    // A page that ends exactly at the last snapshot carries no token.
    const exact = (await app.inject({ method: 'GET', url: '/snapshots?limit=7' })).json<Page>();
    assert.equal(exact.snapshots.length, 7);
    assert.equal(exact.nextPageToken, undefined);
  });

  it('a snapshot uploaded between two pages does not shift the next page', async () => {
    const app = await build(storeDeps());
    const first = (await app.inject({ method: 'GET', url: '/snapshots?limit=2' })).json<Page>();
    const added = 'v2/Incr-00000051-00000060-1700000040.gz';
    await put(added);
    try {
      const second = (await app.inject({ method: 'GET', url: `/snapshots?limit=2&pageToken=${first.nextPageToken}` })).json<Page>();
      assert.deepEqual(
        second.snapshots.map((s) => s.name),
        NEWEST_FIRST.slice(2, 4),
      );
    } finally {
      await store.delete(added);
    }
  });

  it('refuses bad query values with 400 bad_request before reading the store', async () => {
    const snapshots = fakeSnapshots({ list: () => listSnapshots(store) });
    const app = await build(fakeDeps({ snapshots }));
    for (const query of ['limit=0', 'limit=1001', 'limit=abc', 'limit=2.5', 'limit=1e999', 'limit=%20', `pageToken=${'a'.repeat(2049)}`]) {
      assertError(await app.inject({ method: 'GET', url: `/snapshots?${query}` }), 400, 'bad_request');
    }
    const forged = [Buffer.from('garbage').toString('base64url'), Buffer.from(JSON.stringify(['10', 'x'])).toString('base64url'), Buffer.from(JSON.stringify([1.5, 'x'])).toString('base64url'), '%%%'];
    for (const token of forged) {
      assertError(await app.inject({ method: 'GET', url: `/snapshots?pageToken=${encodeURIComponent(token)}` }), 400, 'bad_request', /pageToken: not a token this API returned/);
    }
    assert.equal(snapshots.calls.list, 0);
  });

  it('ignores query parameters it does not know', async () => {
    const app = await build(storeDeps());
    const res = await app.inject({ method: 'GET', url: '/snapshots?limit=2&sort=oldest&debug' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(
      res.json<Page>().snapshots.map((s) => s.name),
      NEWEST_FIRST.slice(0, 2),
    );
  });

  it('a store that fails to list is 502 store_failed', async () => {
    const failing = fakeSnapshots({ list: async () => Promise.reject(new StoreError('timeout', 's3://b/p', 'list timed out')) });
    const app = await build(fakeDeps({ snapshots: failing }));
    assertError(await app.inject({ method: 'GET', url: '/snapshots' }), 502, 'store_failed', /s3:\/\/b\/p: list timed out/);
    assertError(await app.inject({ method: 'GET', url: '/snapshot/latest' }), 502, 'store_failed');
  });

  it('/snapshot/latest is the chain from the newest full snapshot, with the gap and the stranded delta', async () => {
    const app = await build(storeDeps());
    const res = await app.inject({ method: 'GET', url: '/snapshot/latest' });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.full.name, 'v2/Full-00000000-00000030-1700000020.gz');
    // 35-40 lies inside 31-40: the fewest deltas cover the chain.
    assert.deepEqual(
      body.deltas.map((d: { snapshot: { name: string }; skipThrough: number }) => [d.snapshot.name, d.skipThrough]),
      [['v2/Incr-00000031-00000040-1700000025.gz', 30]],
    );
    assert.equal(body.lastRevision, 40);
    assert.equal(body.contiguous, false);
    assert.deepEqual(body.gaps, [{ from: 41, to: 44 }]);
    assert.equal(body.strandedDeltas, 1);
  });

  it('/snapshot/latest of an empty store has no full snapshot', async () => {
    const app = await build(fakeDeps());
    const res = await app.inject({ method: 'GET', url: '/snapshot/latest' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { full: null, deltas: [], lastRevision: 0, contiguous: false, gaps: [], strandedDeltas: 0 });
  });
});

/** An initializer whose outcome the test settles by hand. */
function fakeInitializer(): { api: NonNullable<ServerDeps['initializer']>; settle(s: InitStatus, yaml?: string): void; starts: () => number } {
  let current: InitStatus = { state: 'New', rounds: 0, generation: 1 };
  let yaml: string | undefined;
  let resolve!: (s: InitStatus) => void;
  const done = new Promise<InitStatus>((r) => (resolve = r));
  let starts = 0;
  return {
    api: {
      start: () => {
        starts++;
        if (current.state === 'New') current = { state: 'Progress', rounds: 1, generation: 1, progress: 'gathering facts', startedAt: '2026-01-01T00:00:00.000Z' };
        return done;
      },
      status: () => ({ ...current }),
      etcdConfig: () => yaml,
    },
    settle(s, y) {
      current = s;
      yaml = y;
      resolve(s);
    },
    starts: () => starts,
  };
}

describe('routes: /initialize and /config', () => {
  it('without an initializer every route is 503 no_initializer', async () => {
    const app = await build(fakeDeps());
    for (const [method, url] of [
      ['POST', '/initialize'],
      ['GET', '/initialize'],
      ['GET', '/config'],
    ] as const) {
      assertError(await app.inject({ method, url }), 503, 'no_initializer');
    }
  });

  it('202 with the state while running, 200 once done; GET never starts it; /config 409 until it succeeded', async () => {
    const init = fakeInitializer();
    const app = await build(fakeDeps({ initializer: init.api }));
    const before = await app.inject({ method: 'GET', url: '/initialize' });
    assert.equal(before.statusCode, 200);
    assert.deepEqual(before.json(), { state: 'New', rounds: 0, generation: 1 });
    assert.equal(init.starts(), 0);
    assertError(await app.inject({ method: 'GET', url: '/config' }), 409, 'not_initialized', /state New/);

    const running = await app.inject({ method: 'POST', url: '/initialize?wait=0' });
    assert.equal(running.statusCode, 202);
    assert.equal(running.json().state, 'Progress');
    assert.equal(running.json().progress, 'gathering facts');
    assertError(await app.inject({ method: 'GET', url: '/config' }), 409, 'not_initialized', /state Progress/);

    // A waiting call returns as soon as the initialization settles, well before its wait is over.
    const waiting = app.inject({ method: 'POST', url: '/initialize?wait=30' });
    setTimeout(() => init.settle({ state: 'Successful', decision: 'bootstrap', reason: 'no cluster, no backups', rounds: 1, generation: 1 }, 'name: m1\n'), 50);
    const t0 = Date.now();
    const done = await waiting;
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(done.statusCode, 200);
    assert.deepEqual(done.json(), { state: 'Successful', decision: 'bootstrap', reason: 'no cluster, no backups', rounds: 1, generation: 1 });

    const config = await app.inject({ method: 'GET', url: '/config' });
    assert.equal(config.statusCode, 200);
    assert.match(String(config.headers['content-type']), /^application\/yaml/);
    assert.equal(config.body, 'name: m1\n');
  });

  it('500 with the state when initialization failed', async () => {
    const init = fakeInitializer();
    init.settle({ state: 'Failed', decision: 'restore', error: 'no backup', rounds: 2, generation: 1 });
    const app = await build(fakeDeps({ initializer: init.api }));
    const res = await app.inject({ method: 'POST', url: '/initialize' });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(res.json(), { state: 'Failed', decision: 'restore', error: 'no backup', rounds: 2, generation: 1 });
  });

  it('refuses a wait that is not a whole number of seconds in 0..3600, without starting', async () => {
    const init = fakeInitializer();
    const app = await build(fakeDeps({ initializer: init.api }));
    for (const wait of ['-1', '3601', 'soon', '1.5', '1e999', '%20', '']) {
      assertError(await app.inject({ method: 'POST', url: `/initialize?wait=${wait}` }), 400, 'bad_request', undefined);
    }
    assert.equal(init.starts(), 0);
  });
});
