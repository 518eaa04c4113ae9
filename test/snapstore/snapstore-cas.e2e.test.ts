import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalStore, MAX_VERSIONED_BYTES, probeConditionalWrites, StoreError, type ConditionalWriteProbe, type SnapStore } from '../../src/snapstore/index.js';
import { metaFile } from '../../src/snapstore/local-meta.js';
import { AZURITE, azuriteFixture, FAKE_GCS, gcsFixture, MINIO, minioFixture, withPeer } from '../helpers/peer-stores.js';
import { hasMotoServer, localFixture, motoFixture, s3Fixture, sha256Of, type StoreFixture } from '../helpers/store-fixtures.js';

// Conditional writes (compare-and-swap), one contract for every provider. A store that ignores the
// conditions is found by probeConditionalWrites and its cases are skipped with the probe's reason:
// faking a pass there would hide exactly what the recovery protocol must not run on.

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

async function rejectsWith(p: Promise<unknown>, code: string): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function casContract(makeFixture: () => Promise<StoreFixture>, provider: string, mustHonour: boolean): void {
  describe(`conditional writes: ${provider}`, () => {
    let fx: StoreFixture;
    let store: SnapStore;
    let probe: ConditionalWriteProbe;
    before(async () => {
      fx = await makeFixture();
      store = await fx.open();
      probe = await probeConditionalWrites(store);
    });
    after(async () => {
      await store?.close();
      await fx?.stop();
    });
    /** The reason to skip a case, when the store does not enforce conditions. */
    const ignored = (): string | undefined => (probe.ok ? undefined : `${provider} ignores conditional writes: ${probe.reason}`);

    it('probeConditionalWrites', async (t) => {
      if (mustHonour) assert.deepEqual(probe, { ok: true });
      else t.diagnostic(`probe: ${JSON.stringify(probe)}`);
      assert.deepEqual((await store.list('probe/')).objects, [], 'the probe object is deleted');
    });

    it('create-if-absent succeeds once; the second create fails with precondition_failed', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      const v1 = await store.putIfVersion('cas/create', json({ who: 'first' }), undefined);
      assert.ok(v1.length > 0);
      const err = await rejectsWith(store.putIfVersion('cas/create', json({ who: 'second' }), undefined), 'precondition_failed');
      assert.equal(err.retryable, false);
      const read = await store.readVersioned('cas/create');
      assert.deepEqual(read, { body: json({ who: 'first' }), version: v1 });
    });

    it('update with the current version succeeds and returns a new version', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      const v1 = await store.putIfVersion('cas/update', json({ epoch: 1 }), undefined);
      const v2 = await store.putIfVersion('cas/update', json({ epoch: 2 }), v1, { metadata: { 'ebs-kind': 'claim' } });
      assert.notEqual(v2, v1);
      assert.deepEqual(await store.readVersioned('cas/update'), { body: json({ epoch: 2 }), version: v2 });
      assert.equal((await store.head('cas/update'))?.metadata['ebs-kind'], 'claim');
      const v3 = await store.putIfVersion('cas/update', json({ epoch: 3 }), v2);
      assert.ok(v3 !== v2 && v3 !== v1);
    });

    it('a stale version fails and leaves the object as it was', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      const v1 = await store.putIfVersion('cas/stale', json({ epoch: 1 }), undefined);
      const v2 = await store.putIfVersion('cas/stale', json({ epoch: 2 }), v1);
      await rejectsWith(store.putIfVersion('cas/stale', json({ epoch: 'late' }), v1), 'precondition_failed');
      await rejectsWith(store.putIfVersion('cas/stale', json({ epoch: 'made up' }), 'not-a-version-of-anything'), 'precondition_failed');
      assert.deepEqual(await store.readVersioned('cas/stale'), { body: json({ epoch: 2 }), version: v2 });
    });

    it('readVersioned of an absent object is undefined; an update of it fails', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      assert.equal(await store.readVersioned('cas/absent'), undefined);
      const v = await store.putIfVersion('cas/gone', json({ n: 1 }), undefined);
      await store.delete('cas/gone');
      assert.equal(await store.readVersioned('cas/gone'), undefined);
      await rejectsWith(store.putIfVersion('cas/gone', json({ n: 2 }), v), 'precondition_failed');
      assert.equal(await store.head('cas/gone'), undefined);
      // Deleted, it can be created again.
      await store.putIfVersion('cas/gone', json({ n: 3 }), undefined);
    });

    it('8 concurrent writers with the same expected version: exactly one wins', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      let expected: string | undefined;
      for (let round = 0; round < 5; round++) {
        const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.putIfVersion('cas/race', json({ round, i }), expected)));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, version: r.value }] : []));
        assert.equal(won.length, 1, `round ${round}: ${won.length} winners`);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as StoreError).code, 'precondition_failed', String(r.reason));
        const winner = won[0] as { i: number; version: string };
        assert.deepEqual(await store.readVersioned('cas/race'), { body: json({ round, i: winner.i }), version: winner.version });
        expected = winner.version;
      }
    });

    it('rewriting identical bytes', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      const v1 = await store.putIfVersion('cas/same', json({ same: true }), undefined);
      const v2 = await store.putIfVersion('cas/same', json({ same: true }), v1);
      if (provider.startsWith('s3')) assert.equal(v2, v1, 'S3: the version is the ETag, the md5 of the bytes (documented)');
      else assert.notEqual(v2, v1, 'every write gets a new version');
    });

    it('bodies over the limit are refused before any I/O; reads of a large object are refused', async () => {
      await rejectsWith(store.putIfVersion('cas/big', Buffer.alloc(MAX_VERSIONED_BYTES + 1), undefined), 'config');
      assert.equal(await store.head('cas/big'), undefined);
      await store.putIfVersion('cas/limit', Buffer.alloc(MAX_VERSIONED_BYTES, 7), undefined).catch((err: StoreError) => {
        if (err.code !== 'precondition_failed') throw err;
      });
      assert.equal((await store.readVersioned('cas/limit'))?.body.length, MAX_VERSIONED_BYTES);
      await store.put('cas/large', Readable.from([Buffer.alloc(MAX_VERSIONED_BYTES + 1)]));
      await rejectsWith(store.readVersioned('cas/large'), 'config');
      await rejectsWith(store.putIfVersion('../escape', json({}), undefined), 'invalid_name');
    });

    it('a versioned object is an ordinary object to get, list and delete', async (t) => {
      const skip = ignored();
      if (skip) return t.skip(skip);
      const body = json({ claim: 'm1', epoch: 7 });
      await store.putIfVersion('recovery/claim.json', body, undefined);
      assert.equal((await sha256Of(await store.get('recovery/claim.json'))).size, body.length);
      assert.deepEqual(
        (await store.list('recovery/')).objects.map((o) => o.name),
        ['recovery/claim.json'],
      );
      assert.deepEqual((await store.head('recovery/claim.json'))?.metadata, {}, 'no internal metadata shows');
      await store.delete('recovery/claim.json');
      assert.equal(await store.readVersioned('recovery/claim.json'), undefined);
    });
  });
}

casContract(localFixture, 'local', true);
casContract(s3Fixture, 's3 (s3rver)', false);
withPeer(FAKE_GCS, 'conditional writes: gcs (fake-gcs-server)', () => casContract(gcsFixture, 'gcs (fake-gcs-server)', true));
withPeer(MINIO, 'conditional writes: s3 (MinIO)', () => casContract(minioFixture, 's3 (MinIO)', true));
withPeer(AZURITE, 'conditional writes: azblob (Azurite)', () => casContract(azuriteFixture, 'azblob (Azurite)', true));
if (hasMotoServer()) casContract(motoFixture, 's3 (moto_server)', true);
else {
  describe('conditional writes: s3 (moto_server)', () => {
    it('runs against moto_server', { skip: "moto_server is not on the PATH (pip install 'moto[server]')" }, () => {});
  });
}

/**
 * Forwards every request, but for the next armed write lets the store apply it and then drops the
 * connection before the answer reaches the client: the client retries a write that already won.
 */
class LosingProxy {
  private armed = 0;
  lost = 0;
  writes = 0;
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string, isWrite: (req: IncomingMessage) => boolean): Promise<LosingProxy> {
    const t = new URL(target);
    let self: LosingProxy | undefined;
    const server = createServer((req, res) => {
      const p = self as LosingProxy;
      const write = isWrite(req);
      if (write) p.writes++;
      const lose = write && p.armed > 0;
      if (lose) p.armed--;
      const upstream = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        if (lose) {
          up.resume();
          up.on('end', () => {
            p.lost++;
            req.socket.destroy();
          });
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new LosingProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  loseNext(): void {
    this.armed++;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** The write id on each conditional write: a retried write that had already won reports its win. */
function lostAnswers(makeFixture: () => Promise<StoreFixture>, provider: string, endpointFlag: string, isWrite: (req: IncomingMessage) => boolean): void {
  describe(`conditional writes whose answer is lost: ${provider}`, () => {
    let fx: StoreFixture;
    let proxy: LosingProxy;
    let direct: SnapStore;
    let store: SnapStore;
    before(async () => {
      fx = await makeFixture();
      proxy = await LosingProxy.start(fx.flags[endpointFlag] as string, isWrite);
      direct = await fx.open();
      store = await fx.open({ ...(fx.endpointFlags?.(proxy.url) ?? { [endpointFlag]: proxy.url }), 'store-timeout': '5s' });
    });
    after(async () => {
      await store?.close();
      await direct?.close();
      await proxy?.stop();
      await fx?.stop();
    });

    it('the retry meets 412 from its own first attempt and resolves to that version', async () => {
      proxy.loseNext();
      const before = proxy.writes;
      const v1 = await store.putIfVersion('lost/claim', json({ epoch: 1 }), undefined);
      assert.equal(proxy.lost, 1);
      assert.ok(proxy.writes - before >= 2, 'the client retried');
      assert.deepEqual(await direct.readVersioned('lost/claim'), { body: json({ epoch: 1 }), version: v1 });
      proxy.loseNext();
      const v2 = await store.putIfVersion('lost/claim', json({ epoch: 2 }), v1);
      assert.equal(proxy.lost, 2);
      assert.deepEqual(await direct.readVersioned('lost/claim'), { body: json({ epoch: 2 }), version: v2 });
    });

    it("another writer's object is still a loss", async () => {
      await direct.putIfVersion('lost/other', json({ who: 'other' }), undefined);
      await rejectsWith(store.putIfVersion('lost/other', json({ who: 'me' }), undefined), 'precondition_failed');
    });
  });
}

if (hasMotoServer()) lostAnswers(motoFixture, 's3 (moto_server)', 's3-endpoint', (req) => req.method === 'PUT');
if ('path' in MINIO) lostAnswers(minioFixture, 's3 (MinIO)', 's3-endpoint', (req) => req.method === 'PUT');
if ('path' in FAKE_GCS) lostAnswers(gcsFixture, 'gcs (fake-gcs-server)', 'gcs-endpoint', (req) => req.method === 'POST' && (req.url ?? '').includes('/upload/'));
// The commit of the block list is the conditional write; the block staged before it is not.
if ('path' in AZURITE) lostAnswers(azuriteFixture, 'azblob (Azurite)', 'azure-endpoint', (req) => req.method === 'PUT' && (req.url ?? '').includes('comp=blocklist'));

describe('probeConditionalWrites on a store that ignores the conditions', () => {
  it('reports not ok, saying which condition was ignored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-cas-ignoring-'));
    const inner = new LocalStore(dir);
    // Like an S3 clone that accepts If-None-Match/If-Match and writes regardless.
    const ignoring: SnapStore = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'putIfVersion') {
          return async (name: string, body: Buffer) => target.putIfVersion(name, body, (await target.readVersioned(name))?.version);
        }
        const v: unknown = Reflect.get(target, prop);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    try {
      const probe = await probeConditionalWrites(ignoring);
      assert.equal(probe.ok, false);
      assert.match((probe as { reason: string }).reason, /create-if-absent.*ignores the condition/);
      assert.deepEqual((await inner.list('')).objects, [], 'the probe object is deleted');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A LocalStore in its own process, driven line by line over stdin: each line asks for one
 * conditional write (at a given wall-clock time, so the racers start together) or for a run of
 * read-increment-write loops; each answer is a line of JSON on stdout.
 */
class Racer {
  private readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor(root: string, id: number) {
    const script = `
      const { createInterface } = await import('node:readline');
      const { LocalStore } = await import(${JSON.stringify(join(REPO, 'src/snapstore/local.ts'))});
      const store = new LocalStore(${JSON.stringify(root)});
      const out = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
      for await (const line of createInterface({ input: process.stdin })) {
        const cmd = JSON.parse(line);
        await new Promise((r) => setTimeout(r, Math.max(0, cmd.at - Date.now())));
        if (cmd.op === 'put') {
          try {
            out({ ok: true, version: await store.putIfVersion(cmd.name, Buffer.from(JSON.stringify({ id: ${id}, round: cmd.round })), cmd.expected ?? undefined) });
          } catch (err) {
            out({ ok: false, code: err.code, message: err.message });
          }
        } else if (cmd.op === 'increment') {
          let retries = 0;
          for (let done = 0; done < cmd.times; ) {
            const cur = await store.readVersioned(cmd.name);
            const n = cur ? JSON.parse(cur.body.toString()).n : 0;
            try {
              await store.putIfVersion(cmd.name, Buffer.from(JSON.stringify({ n: n + 1 })), cur?.version);
              done++;
            } catch (err) {
              if (err.code !== 'precondition_failed') { out({ ok: false, code: err.code, message: err.message }); break; }
              retries++;
            }
          }
          out({ ok: true, retries });
        }
      }`;
    this.child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  }

  async ask(cmd: Record<string, unknown>): Promise<{ ok: boolean; version?: string; code?: string; message?: string; retries?: number }> {
    this.child.stdin?.write(JSON.stringify(cmd) + '\n');
    const next = await this.lines.next();
    if (next.done) throw new Error(`racer ${this.child.pid} exited (${this.child.exitCode})`);
    return JSON.parse(next.value) as { ok: boolean; version?: string; code?: string };
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill('SIGKILL');
  }
}

describe('local store: conditional writes across processes', { timeout: 120_000 }, () => {
  let root: string;
  let racers: Racer[] = [];
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'ebs-cas-procs-'));
    racers = Array.from({ length: 6 }, (_, i) => new Racer(root, i));
    // Each child loads tsx and the store before its first answer; the first round waits for all.
  });
  after(() => {
    for (const r of racers) r.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('6 processes racing with the same expected version: exactly one wins each round', async () => {
    let expected: string | undefined;
    for (let round = 0; round < 10; round++) {
      // The first round starts late enough for every child to have loaded.
      const at = Date.now() + (round === 0 ? 3_000 : 30);
      const results = await Promise.all(racers.map((r) => r.ask({ op: 'put', name: 'recovery/claim.json', round, expected: expected ?? null, at })));
      const won = results.flatMap((r, i) => (r.ok ? [{ i, version: r.version as string }] : []));
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results)}`);
      for (const r of results) if (!r.ok) assert.equal(r.code, 'precondition_failed', r.message);
      const winner = won[0] as { i: number; version: string };
      const store = new LocalStore(root);
      assert.deepEqual(await store.readVersioned('recovery/claim.json'), { body: json({ id: winner.i, round }), version: winner.version });
      expected = winner.version;
    }
  });

  it('6 processes each incrementing a counter 15 times by read-compare-write: no update is lost', async () => {
    const at = Date.now() + 50;
    const results = await Promise.all(racers.map((r) => r.ask({ op: 'increment', name: 'counter', times: 15, at })));
    for (const r of results) assert.equal(r.ok, true, r.message);
    const final = await new LocalStore(root).readVersioned('counter');
    assert.deepEqual(JSON.parse(final?.body.toString() ?? '{}'), { n: 6 * 15 });
    const retries = results.reduce((s, r) => s + (r.retries ?? 0), 0);
    assert.ok(retries > 0, 'the writers did contend');
  });
});

describe('local store: lock recovery', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'ebs-cas-locks-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const lockOf = (name: string): string => join(root, '.ebs-meta', ...name.split('/')) + '.lock';
  const plantLock = (name: string, content: string, ageMs = 0): void => {
    const path = lockOf(name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
    if (ageMs > 0) {
      const t = new Date(Date.now() - ageMs);
      utimesSync(path, t, t);
    }
  };
  const owner = (pid: number, host = hostname()): string => JSON.stringify({ pid, host, token: 'planted', at: new Date().toISOString() });

  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => child.once('exit', r));
    return child.pid as number;
  }

  it('a lock left by a crashed process on this host is broken at once', async () => {
    plantLock('dead/claim', owner(await deadPid()));
    const started = performance.now();
    const v = await new LocalStore(root).putIfVersion('dead/claim', json({ n: 1 }), undefined);
    assert.ok(performance.now() - started < 1_000);
    assert.equal((await new LocalStore(root).readVersioned('dead/claim'))?.version, v);
  });

  it('a lock older than the stale age is broken, whoever holds it', async () => {
    // A live pid, but on another host: only its age can tell.
    plantLock('old/claim', owner(process.pid, 'another-host'), 31_000);
    await new LocalStore(root).putIfVersion('old/claim', json({ n: 1 }), undefined);
    // Empty: its holder died between creating and writing it.
    plantLock('empty/claim', '', 31_000);
    await new LocalStore(root).putIfVersion('empty/claim', json({ n: 1 }), undefined);
  });

  it('a fresh lock of a live holder is waited for, then broken once stale', async () => {
    plantLock('live/claim', owner(process.pid, 'another-host'));
    const store = new LocalStore(root, { lockStaleMs: 800 });
    const started = performance.now();
    await store.putIfVersion('live/claim', json({ n: 1 }), undefined);
    const waited = performance.now() - started;
    assert.ok(waited >= 700, `waited ${Math.round(waited)} ms`);
  });

  it('a writer waits for a held lock and proceeds when it is released', async () => {
    plantLock('held/claim', owner(process.pid));
    const store = new LocalStore(root);
    const started = performance.now();
    const put = store.putIfVersion('held/claim', json({ n: 1 }), undefined);
    setTimeout(() => rmSync(lockOf('held/claim')), 300);
    await put;
    assert.ok(performance.now() - started >= 290);
  });

  it('a writer waiting for a lock can be aborted', async () => {
    plantLock('abort/claim', owner(process.pid));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await rejectsWith(new LocalStore(root).putIfVersion('abort/claim', json({ n: 1 }), undefined, { signal: ac.signal }), 'aborted');
    assert.equal(await new LocalStore(root).head('abort/claim'), undefined);
    rmSync(lockOf('abort/claim'));
  });

  it('a write left half done (meta renamed, object not) reads back the old body under a version nobody holds', async () => {
    const store = new LocalStore(root);
    const v1 = await store.putIfVersion('torn/claim', json({ epoch: 1 }), undefined);
    // What a crash between the two renames leaves: the next write's meta beside the old object.
    const metaPath = join(root, metaFile('torn/claim'));
    const { createHash } = await import('node:crypto');
    const next = json({ epoch: 2 });
    writeFileSync(metaPath, JSON.stringify({ sha256: createHash('sha256').update(next).digest('hex'), size: next.length, metadata: {}, version: 'v2-never-acknowledged' }));
    const read = await store.readVersioned('torn/claim');
    assert.deepEqual(read?.body, json({ epoch: 1 }));
    assert.ok(read && read.version !== v1 && read.version !== 'v2-never-acknowledged', read?.version);
    await rejectsWith(store.putIfVersion('torn/claim', json({ epoch: 3 }), v1), 'precondition_failed');
    await rejectsWith(store.putIfVersion('torn/claim', json({ epoch: 3 }), 'v2-never-acknowledged'), 'precondition_failed');
    const v3 = await store.putIfVersion('torn/claim', json({ epoch: 3 }), read.version);
    assert.deepEqual(await store.readVersioned('torn/claim'), { body: json({ epoch: 3 }), version: v3 });
    assert.equal((await sha256Of(await store.get('torn/claim'))).size, json({ epoch: 3 }).length, 'get checks the sha256 again');
  });
});
