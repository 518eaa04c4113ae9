/**
 * The replay's KV transport (src/etcd/kv-channel.ts) against a real temporary etcd: many guarded
 * transactions in flight on one connection, each answered with its own outcome and revision; etcd's
 * refusals as gRPC statuses; a message far above HTTP/2's frame and window sizes; and a frozen
 * (SIGSTOP) or stopped etcd failing every call in flight with an error instead of a hang.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KvCallError, KvChannel } from '../../src/etcd/kv-channel.js';
import { freeLoopbackPort, TemporaryEtcd } from '../../src/etcd/temporary.js';
import { DeadlineError } from '../../src/resilience.js';
import '../helpers/cluster.js';
import { capturingLogger } from '../helpers/sidecar.js';

const key = (s: string): Buffer => Buffer.from(`/kv-channel/${s}`);

describe('KV channel to a real etcd', { timeout: 120_000 }, () => {
  const { log } = capturingLogger('warn');
  let dir: string;
  let etcd: TemporaryEtcd;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebs-kv-channel-'));
    etcd = await TemporaryEtcd.start({ dataDir: join(dir, 'data'), name: 'kv', peerPort: await freeLoopbackPort(), logFile: join(dir, 'etcd.log'), log });
  });

  after(async () => {
    etcd?.process.thaw();
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers 2,000 guarded transactions sent at once, each with its own revision, and refuses the ones whose guard fails', async () => {
    const ch = new KvChannel(etcd.clientURL, { deadlineMs: 60_000 });
    try {
      const start = await etcd.revision();
      const calls = Array.from({ length: 2_000 }, (_, i) =>
        ch.txn([{ key: key(`many/${i}`), target: 'Mod', result: 'Less', mod_revision: String(start + 1) }], [{ request_put: { key: key(`many/${i}`), value: Buffer.from(`v${i}`) } }]),
      );
      assert.ok(ch.inFlight >= 1_000, `calls in flight at once: ${ch.inFlight}`);
      const answers = await Promise.all(calls);
      assert.ok(answers.every((a) => a.succeeded));
      const revisions = answers.map((a) => a.revision).sort((a, b) => a - b);
      assert.deepEqual(
        revisions,
        Array.from({ length: 2_000 }, (_, i) => start + 1 + i),
        'one revision per transaction, none shared, none skipped',
      );
      assert.equal(ch.inFlight, 0);
      // Every key now has mod_revision > start + 1 but the first: the same guards fail, write nothing, move nothing.
      const again = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          ch.txn([{ key: key(`many/${i + 1}`), target: 'Mod', result: 'Less', mod_revision: String(start + 1) }], [{ request_put: { key: key(`many/${i + 1}`), value: Buffer.from('no') } }]),
        ),
      );
      assert.ok(again.every((a) => !a.succeeded && a.revision === start + 2_000));
      const read = await ch.countSerializable(key('many/'));
      assert.equal(read.revision, start + 2_000);
      const kv = await etcd.client.get(key('many/1999').toString()).exec();
      assert.equal(kv.kvs[0]?.value.toString(), 'v1999');
    } finally {
      ch.close();
    }
  });

  it("surfaces etcd's refusals as KvCallError with the gRPC status, and a 20 MB transaction goes through", async () => {
    const ch = new KvChannel(etcd.clientURL, { deadlineMs: 60_000 });
    try {
      const err = await ch.txn([], [{ request_put: { key: Buffer.alloc(0), value: Buffer.from('x') } }]).then(
        () => assert.fail('an empty key was accepted'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof KvCallError, String(err));
      assert.equal(err.code, 3);
      assert.match(err.message, /INVALID_ARGUMENT: etcdserver: key is not provided/);
      // etcd refuses a transaction naming a key twice: the status travels in trailers-only headers.
      const dup = await ch.txn([], [{ request_put: { key: key('dup'), value: Buffer.from('a') } }, { request_put: { key: key('dup'), value: Buffer.from('b') } }]).catch((e: unknown) => e);
      assert.ok(dup instanceof KvCallError && /duplicate key/.test(dup.message), String(dup));
      const big = Buffer.alloc(20 * 1024 * 1024, 7);
      const before = await etcd.revision();
      const res = await ch.txn([], [{ request_put: { key: key('big'), value: big } }]);
      assert.deepEqual(res, { succeeded: true, revision: before + 1 });
      const kv = await etcd.client.get(key('big').toString()).buffer();
      assert.ok(kv?.equals(big));
    } finally {
      ch.close();
    }
  });

  it('fails every call in flight with a DeadlineError when etcd is frozen, and works again once it thaws', async () => {
    const ch = new KvChannel(etcd.clientURL, { deadlineMs: 1_000 });
    try {
      // Connected before the freeze: the calls then wait on a live socket nothing reads.
      await ch.countSerializable(key('warm'));
      etcd.process.freeze();
      const t = performance.now();
      const outcomes = await Promise.allSettled(Array.from({ length: 32 }, (_, i) => ch.txn([], [{ request_put: { key: key(`frozen/${i}`), value: Buffer.from('v') } }])));
      const took = performance.now() - t;
      for (const o of outcomes) {
        assert.equal(o.status, 'rejected');
        assert.ok(o.reason instanceof DeadlineError, String(o.reason));
        assert.match((o.reason as Error).message, /etcd Txn on http:\/\/127\.0\.0\.1:\d+: no answer within 1000 ms/);
      }
      assert.ok(took >= 950 && took < 5_000, `all failed after ${took.toFixed(0)} ms`);
      assert.equal(ch.inFlight, 0);
    } finally {
      etcd.process.thaw();
    }
    try {
      const res = await ch.txn([], [{ request_put: { key: key('thawed'), value: Buffer.from('v') } }]);
      assert.ok(res.succeeded);
    } finally {
      ch.close();
    }
  });

  it('fails calls with UNAVAILABLE, not a hang, when nothing listens at the URL', async () => {
    const ch = new KvChannel(`http://127.0.0.1:${await freeLoopbackPort()}`, { deadlineMs: 30_000 });
    const t = performance.now();
    const err = await ch.txn([], [{ request_put: { key: key('nowhere'), value: Buffer.from('v') } }]).catch((e: unknown) => e);
    assert.ok(err instanceof KvCallError && err.code === 14, String(err));
    assert.match(err.message, /ECONNREFUSED/);
    assert.ok(performance.now() - t < 5_000);
    ch.close();
    await assert.rejects(ch.txn([], []), /the channel to .* is closed/);
  });
});
