import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { BoltFormatError, BoltScanner, inspectBoltFile, readBoltFacts, type BoltFacts } from '../../src/etcd/bolt.js';
import { EtcdProcess } from '../../src/etcd/process.js';
import { openSnapshotStream } from '../../src/etcd/snapshot-stream.js';
import { etcdTools, etcdVersion } from '../../src/etcd/tools.js';
import { eventually, freePort, TestCluster } from '../helpers/cluster.js';
import { mulberry32 } from '../helpers/random.js';

const run = promisify(execFile);

/** The offline snapshot commands (status, restore) of the etcd in PATH: etcdutl's from 3.5 on, as 3.6 has no others. */
const OFFLINE_TOOL = etcdTools().etcdutl ?? 'etcdctl';

let minor: Promise<string> | undefined;
function etcdMinor(): Promise<string> {
  minor ??= etcdVersion(etcdTools()).then((v) => v.minor);
  return minor;
}
const TRAILER = 32; // the sha256 etcd appends to a snapshot stream, and `etcdctl snapshot save` keeps

/** A snapshot taken with etcdctl, with what etcd and etcdctl say about it. */
interface Taken {
  file: string;
  /** The db bytes as `Maintenance.Snapshot` streams them, trailer stripped. */
  stream: Buffer;
  facts: BoltFacts;
  /** `etcdctl snapshot status` revision: the last key's, blind to compaction (0 when "key" is empty). */
  statusRevision: number;
  liveRevision: number;
}

/** Feeds `bytes` in chunk sizes spread evenly over 1 byte .. 1 MiB on a log scale, in a reused buffer. */
function scanInChunks(bytes: Buffer, seed: number): BoltFacts {
  const random = mulberry32(seed);
  const scanner = new BoltScanner();
  const reused = Buffer.alloc(1 << 20);
  for (let at = 0; at < bytes.length;) {
    const size = Math.min(bytes.length - at, Math.floor(Math.exp(random() * Math.log(1 << 20))) || 1);
    bytes.copy(reused, 0, at, at + size);
    scanner.write(reused.subarray(0, size));
    reused.fill(0xa5, 0, size); // anything the scanner kept a reference to is now garbage
    at += size;
  }
  return scanner.finish();
}

function scan(bytes: Buffer): BoltFacts {
  const scanner = new BoltScanner();
  scanner.write(bytes);
  return scanner.finish();
}

async function liveStatus(cluster: TestCluster, auth: string[]): Promise<{ revision: number; raftIndex: number }> {
  const out = await cluster.etcdctl([...auth, 'endpoint', 'status', '-w', 'json']);
  const [row] = JSON.parse(out.replace(/"(member_id|cluster_id|leader)":(\d+)/g, '"$1":"$2"')) as { Status: { header: { revision: number }; raftIndex: number } }[];
  assert.ok(row, 'endpoint status row');
  return { revision: row.Status.header.revision, raftIndex: row.Status.raftIndex };
}

/**
 * Saves a snapshot and checks the scanner against etcd: its revision is etcd's current revision
 * (nothing writes in between), agrees with `etcdctl snapshot status`, and does not depend on how
 * the stream is cut into chunks.
 */
async function takeSnapshot(cluster: TestCluster, name: string, auth: string[] = []): Promise<Taken> {
  const file = join(cluster.dir, `${name}.db`);
  const before = await liveStatus(cluster, auth);
  await cluster.etcdctl([...auth, 'snapshot', 'save', file]);
  const after = await liveStatus(cluster, auth);
  assert.equal(after.revision, before.revision, 'something wrote while the snapshot was taken');

  const facts = await readBoltFacts(file);
  const { stdout } = await run(OFFLINE_TOOL, ['snapshot', 'status', file, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
  const statusRevision = (JSON.parse(stdout) as { revision: number }).revision;
  assert.equal(facts.revision, before.revision, 'revision etcd reports');
  assert.equal(facts.revision, Math.max(1, statusRevision, facts.compactRevision), 'revision etcdctl snapshot status reads');
  // Bounded by the index after the snapshot, not before: from 3.5 on every applied entry moves the
  // consistent index, and with auth each etcdctl call's Authenticate is one, between the two statuses.
  assert.ok(facts.consistentIndex <= BigInt(after.raftIndex), `consistent index ${facts.consistentIndex} beyond raft index ${after.raftIndex}`);
  const size = statSync(file).size;
  assert.equal(size, facts.pageCount * facts.pageSize + TRAILER, 'the file is the db plus the sha256 trailer');

  const stream = readFileSync(file).subarray(0, size - TRAILER);
  assert.deepEqual(scan(stream), facts, 'one write');
  for (const seed of [1, 2, 3]) assert.deepEqual(scanInChunks(stream, seed), facts, `random chunks, seed ${seed}`);
  await assertRandomAccessAgrees(file, facts);
  return { file, stream, facts, statusRevision, liveRevision: before.revision };
}

/** inspectBoltFile, which reads a few pages, finds what the full scan found (all but the key count). */
async function assertRandomAccessAgrees(file: string, facts: BoltFacts): Promise<void> {
  const { fileBytes, pagesRead, damagedMeta, ...found } = await inspectBoltFile(file);
  const { keyCount, ...expected } = facts;
  assert.deepEqual(found, expected, 'inspectBoltFile agrees with the full scan');
  assert.equal(damagedMeta, undefined);
  assert.equal(fileBytes, statSync(file).size);
  assert.ok(pagesRead < 20 || pagesRead < keyCount / 100, `${pagesRead} pages read for ${keyCount} keys`);
}

/** Restores `file` into a new single-member etcd, starts it, and returns the revision it reports. */
async function restoredRevision(cluster: TestCluster, file: string): Promise<number> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const clientURL = `http://127.0.0.1:${clientPort}`;
  const peerURL = `http://127.0.0.1:${peerPort}`;
  const dataDir = join(cluster.dir, 'restored');
  rmSync(dataDir, { recursive: true, force: true });
  await run(OFFLINE_TOOL, ['snapshot', 'restore', file, '--name=restored', `--data-dir=${dataDir}`, `--initial-cluster=restored=${peerURL}`, `--initial-advertise-peer-urls=${peerURL}`], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  const etcd = new EtcdProcess({
    name: 'restored',
    dataDir,
    listenClientUrls: [clientURL],
    advertiseClientUrls: [clientURL],
    listenPeerUrls: [peerURL],
    initialAdvertisePeerUrls: [peerURL],
    initialCluster: `restored=${peerURL}`,
    initialClusterState: 'new',
    initialClusterToken: 'restored',
    logFile: join(cluster.dir, 'restored.log'),
    extraArgs: ['--log-level=warn'],
  });
  etcd.start();
  try {
    const [row] = await eventually('restored etcd answers', () => cluster.endpointStatus([clientURL]), 30_000);
    assert.ok(row);
    return row.Status.header.revision;
  } finally {
    await etcd.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function leaseGrant(cluster: TestCluster, ttl: number): Promise<string> {
  const out = await cluster.etcdctl(['lease', 'grant', String(ttl)]);
  const id = /lease ([0-9a-f]+) granted/.exec(out)?.[1];
  assert.ok(id, out);
  return id;
}

/** The byte offset of the element whose key is `key` in the leaf page at `pageAt`. */
function leafKeyOffset(bytes: Buffer, pageAt: number, key: string): number | undefined {
  const count = bytes.readUInt16LE(pageAt + 10);
  for (let i = 0; i < count; i++) {
    const e = pageAt + 16 + i * 16;
    const at = e + bytes.readUInt32LE(e + 4);
    const size = bytes.readUInt32LE(e + 8);
    if (bytes.subarray(at, at + size).toString('latin1') === key) return at;
  }
  return undefined;
}

describe('bolt facts of etcd snapshots and data dirs', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let small: Taken | undefined;
  let last: Taken | undefined;
  before(async () => {
    cluster = await TestCluster.start(1);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a fresh cluster is at revision 1 with an empty key bucket', async () => {
    const { facts, statusRevision } = await takeSnapshot(cluster, 'fresh');
    assert.equal(statusRevision, 0, 'etcdctl sees no key');
    const { revision, compactRevision, keyCount } = facts;
    assert.deepEqual({ revision, compactRevision, keyCount }, { revision: 1, compactRevision: 0, keyCount: 0 });
    // 3.4 writes the consistent index with key writes only; 3.5 on with every applied entry, so a
    // fresh member's membership and cluster-version entries already count there.
    if ((await etcdMinor()) === '3.4') assert.equal(facts.consistentIndex, 0n);
  });

  it('a few puts', async () => {
    for (const k of ['a', 'b', 'c']) await cluster.etcdctl(['put', k, `value of ${k}`]);
    small = await takeSnapshot(cluster, 'few');
    assert.equal(small.facts.revision, 4);
    assert.equal(small.facts.keyCount, 3);
    assert.ok(small.facts.consistentIndex > 0n);
  });

  it('keys attached to leases', async () => {
    const lease = await leaseGrant(cluster, 600);
    for (let i = 0; i < 5; i++) await cluster.etcdctl(['put', `leased/${i}`, 'x', `--lease=${lease}`]);
    await leaseGrant(cluster, 300); // a lease with no key: no revision
    const { facts } = await takeSnapshot(cluster, 'leases');
    assert.equal(facts.revision, 9);
    assert.equal(facts.keyCount, 8);
  });

  it('a delete as the last operation: the last key is a tombstone', async () => {
    await cluster.etcdctl(['del', 'leased/', '--prefix']); // one revision, five tombstones
    const { facts } = await takeSnapshot(cluster, 'deleted');
    assert.equal(facts.revision, 10);
    assert.equal(facts.keyCount, 13);
  });

  it('50k keys of 1 KB: a key bucket several levels deep, at a measured speed', async (t) => {
    const client = new Etcd3({ hosts: cluster.endpoints });
    const value = Buffer.alloc(1024, 'v');
    try {
      // 100 puts a txn (etcd allows 128): one revision each, 100 key-bucket entries each.
      const txns = Array.from({ length: 500 }, (_, n) => n);
      const workers = Array.from({ length: 8 }, async () => {
        for (let n = txns.shift(); n !== undefined; n = txns.shift()) {
          const success = Array.from({ length: 100 }, (_, i) => ({ request_put: { key: Buffer.from(`bulk/${n}/${i}`), value } }));
          await client.kv.txn({ success });
        }
      });
      await Promise.all(workers);
    } finally {
      client.close();
    }
    await cluster.etcdctl(['put', 'after-bulk', '1']);
    last = await takeSnapshot(cluster, 'bulk');
    assert.equal(last.facts.revision, 10 + 500 + 1);
    assert.equal(last.facts.keyCount, 13 + 50_000 + 1);
    assert.ok(last.facts.pageCount * last.facts.pageSize > 50e6, `db is ${last.facts.pageCount * last.facts.pageSize} bytes`);

    const rounds = 5;
    const started = performance.now();
    for (let i = 0; i < rounds; i++) await readBoltFacts(last.file);
    const ms = (performance.now() - started) / rounds;
    const mb = last.stream.length / 1e6;
    t.diagnostic(`readBoltFacts: ${mb.toFixed(1)} MB in ${ms.toFixed(0)} ms = ${(mb / (ms / 1000)).toFixed(0)} MB/s; 1 GB ≈ ${(((1000 / mb) * ms) / 1000).toFixed(1)} s`);

    assert.equal(await restoredRevision(cluster, last.file), last.facts.revision, 'revision of an etcd restored from it');
  });

  it('the Maintenance.Snapshot stream, scanned as it arrives with the trailer held back', async () => {
    assert.ok(last);
    const client = new Etcd3({ hosts: cluster.endpoints });
    try {
      const scanner = new BoltScanner();
      const sha = createHash('sha256');
      let held = Buffer.alloc(0);
      let chunks = 0;
      for await (const chunk of await openSnapshotStream(client)) {
        const joined = Buffer.concat([held, chunk as Buffer]);
        const db = joined.subarray(0, Math.max(0, joined.length - TRAILER));
        scanner.write(db);
        sha.update(db);
        held = Buffer.from(joined.subarray(db.length));
        chunks++;
      }
      assert.ok(chunks > 100, `${chunks} chunks`);
      assert.deepEqual(held, sha.digest(), 'the trailer is the sha256 of the db bytes');
      // Another snapshot than `last`, of the same revision: etcd 3.6 may allocate a page in between
      // without any write (its own bookkeeping), so only the page count may differ, by a page or two.
      const { pageCount, ...facts } = scanner.finish();
      const { pageCount: lastPageCount, ...lastFacts } = last.facts;
      assert.deepEqual(facts, lastFacts);
      assert.ok(Math.abs(pageCount - lastPageCount) <= 2, `${pageCount} pages in the stream, ${lastPageCount} in the snapshot before`);
    } finally {
      client.close();
    }
  });

  it("the stopped member's own member/snap/db says what the snapshot just before said", async () => {
    const m = cluster.members[0];
    assert.ok(m);
    const before = await takeSnapshot(cluster, 'before-stop');
    await m.process.stop();
    try {
      const own = await readBoltFacts(join(m.dataDir, 'member', 'snap', 'db'));
      // Same transaction: the snapshot copies the live meta, so even the page count agrees.
      assert.deepEqual(own, before.facts);
      await assertRandomAccessAgrees(join(m.dataDir, 'member', 'snap', 'db'), own);
    } finally {
      cluster.restart(m.name);
      await cluster.waitHealthy();
    }
  });

  describe('damaged input', () => {
    const snapshot = (): Buffer => {
      assert.ok(small, 'the few-puts snapshot');
      return Buffer.from(small.stream);
    };
    let pageSize = 0;
    before(() => {
      pageSize = small?.facts.pageSize ?? 0;
    });
    const rejects = async (bytes: Buffer, message: RegExp): Promise<void> => {
      assert.throws(
        () => scan(bytes),
        (err: unknown) => err instanceof BoltFormatError && message.test(err.message),
      );
      assert.throws(
        () => scanInChunks(bytes, 7),
        (err: unknown) => err instanceof BoltFormatError && message.test(err.message),
      );
      const file = join(cluster.dir, 'damaged.db');
      writeFileSync(file, bytes);
      await assert.rejects(inspectBoltFile(file), (err: unknown) => err instanceof BoltFormatError && message.test(err.message));
    };

    it('bad magic in both meta pages', async () => {
      const bytes = snapshot();
      bytes.writeUInt32LE(0xdeadbeef, 16);
      bytes.writeUInt32LE(0xdeadbeef, pageSize + 16);
      await rejects(bytes, /meta page 0: bad magic 0xdeadbeef.*meta page 1: bad magic 0xdeadbeef/);
    });

    it('a flipped byte in one meta page falls back to the other, as bbolt does; in both it is an error', async () => {
      const bytes = snapshot();
      bytes.writeUInt8(bytes.readUInt8(16 + 40) ^ 0x01, 16 + 40); // meta 0's pgid
      assert.deepEqual(scan(bytes), small?.facts);
      const file = join(cluster.dir, 'one-meta.db');
      writeFileSync(file, bytes);
      assert.match((await inspectBoltFile(file)).damagedMeta ?? '', /meta page 0: checksum mismatch/);
      bytes.writeUInt8(bytes.readUInt8(pageSize + 16 + 16) ^ 0x80, pageSize + 16 + 16); // meta 1's root
      await rejects(bytes, /meta page 0: checksum mismatch.*meta page 1: checksum mismatch/);
    });

    it('truncated', async () => {
      const bytes = snapshot();
      await rejects(bytes.subarray(0, bytes.length - pageSize), /truncated: the meta page says the db is \d+ bytes .* (only \d+ bytes arrived|the file has \d+)/);
      await rejects(bytes.subarray(0, 100), /truncated/);
      await rejects(bytes.subarray(0, 40), /truncated: 40 bytes/);
      await rejects(Buffer.alloc(0), /truncated: 0 bytes/);
    });

    it('not a bolt db at all', async () => {
      await rejects(Buffer.alloc(3 * pageSize, 'not a db'), /not a readable bbolt db/);
    });

    it('the root page is not a leaf or branch', async () => {
      const bytes = snapshot();
      const root = bytes.readUInt32LE(16 + 16);
      bytes.writeUInt16LE(0x10, root * pageSize + 8);
      await rejects(bytes, new RegExp(`the root bucket: page ${root} is not a branch or leaf page`));
    });

    it('a bolt db without the "key" bucket', async () => {
      const bytes = snapshot();
      const root = bytes.readUInt32LE(16 + 16);
      const at = leafKeyOffset(bytes, root * pageSize, 'key');
      assert.ok(at !== undefined, 'the "key" bucket in the root leaf');
      bytes.write('kez', at, 'latin1');
      await rejects(bytes, /bucket "key" is missing/);
    });
  });
});

describe('bolt facts after compaction', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start(1);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('keeps the compaction revision and the later keys', async () => {
    for (let i = 0; i < 5; i++) await cluster.etcdctl(['put', `k${i}`, String(i)]);
    await cluster.etcdctl(['compact', '4', '--physical']);
    await cluster.etcdctl(['put', 'k9', '9']);
    const { facts } = await takeSnapshot(cluster, 'partly-compacted');
    assert.equal(facts.compactRevision, 4);
    assert.equal(facts.revision, 7);
  });

  it('takes the revision from finishedCompactRev once compaction removed every key', async () => {
    await cluster.etcdctl(['del', '', '--from-key']);
    const { revision } = await liveStatus(cluster, []);
    await cluster.etcdctl(['compact', String(revision), '--physical']);
    const taken = await takeSnapshot(cluster, 'all-compacted');
    if ((await etcdMinor()) === '3.4') {
      assert.equal(taken.statusRevision, 0, 'etcdctl snapshot status sees no key left');
      assert.equal(taken.facts.keyCount, 0);
    } else {
      // From 3.5 on compaction keeps the tombstones written at the compaction revision itself, so
      // the key bucket is never emptied: the revision is read from them and finishedCompactRev alike.
      assert.equal(taken.statusRevision, revision, 'snapshot status reads the kept tombstones');
      assert.ok(taken.facts.keyCount > 0);
    }
    assert.equal(taken.facts.compactRevision, revision);
    assert.equal(taken.facts.revision, revision);
    assert.equal(await restoredRevision(cluster, taken.file), revision, 'revision of an etcd restored from it');
  });
});

describe('bolt facts with auth and a user whose name looks like a revision key', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  const root = ['--user=root:rootpw'];
  before(async () => {
    cluster = await TestCluster.start(1);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('ignores 17-byte keys outside the "key" bucket', async () => {
    for (let i = 0; i < 3; i++) await cluster.etcdctl(['put', `k${i}`, String(i)]);
    await cluster.etcdctl(['role', 'add', 'root']);
    await cluster.etcdctl(['user', 'add', 'root', '--new-user-password=rootpw', '--interactive=false']);
    await cluster.etcdctl(['user', 'grant-role', 'root', 'root']);
    await cluster.etcdctl(['user', 'add', 'abcdefgh_ijklmnop', '--new-user-password=pw', '--interactive=false']);
    await cluster.etcdctl(['auth', 'enable']);
    const { facts } = await takeSnapshot(cluster, 'auth', root);
    assert.equal(facts.revision, 4);
    assert.equal(facts.keyCount, 3);
  });
});
