import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { readBoltFacts } from '../../src/etcd/bolt.js';
import { snapshotRestore } from '../../src/etcd/etcdctl.js';
import { inspectDataDir, type DataDirFacts } from '../../src/etcd/datadir.js';
import { memberIdHex } from '../../src/etcd/members.js';
import { EtcdProcess } from '../../src/etcd/process.js';
import { WalReader } from '../../src/etcd/wal.js';
import { eventually, freePort, TestCluster, type TestMember } from '../helpers/cluster.js';
import { loneMember } from '../helpers/replay.js';

const run = promisify(execFile);

/** What `etcdctl endpoint status -w json` says about one member, IDs in hex like the inspector's. */
interface Reported {
  memberId: string;
  clusterId: string;
  revision: number;
  raftIndex: number;
  raftTerm: number;
}

async function reported(cluster: TestCluster, m: TestMember): Promise<Reported> {
  const [row] = await cluster.endpointStatus([m.clientURL]);
  assert.ok(row, `status of ${m.name}`);
  // The helper's type names only the fields other tests use; etcdctl prints these too.
  const s = row.Status as typeof row.Status & { raftIndex: number; raftTerm: number };
  return { memberId: memberIdHex(s.header.member_id), clusterId: memberIdHex(s.header.cluster_id), revision: s.header.revision, raftIndex: s.raftIndex, raftTerm: s.raftTerm };
}

async function putMany(cluster: TestCluster, prefix: string, n: number, value = 'v'.repeat(200)): Promise<void> {
  const client = new Etcd3({ hosts: cluster.endpoints });
  try {
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => client.put(`${prefix}/${i + j}`).value(value)));
  } finally {
    client.close();
  }
}

/** The inspector against what etcd said right before the member stopped, and against the full db scan. */
async function assertMatches(facts: DataDirFacts, was: Reported, dataDir: string): Promise<void> {
  assert.equal(facts.state, 'valid', facts.reason);
  assert.equal(facts.memberId, was.memberId);
  assert.equal(facts.clusterId, was.clusterId);
  assert.equal(facts.revision, was.revision);
  assert.equal(facts.raftIndex, was.raftIndex);
  assert.equal(facts.raftTerm, was.raftTerm);
  assert.equal(facts.commitIndex, was.raftIndex);
  // etcd 3.4 stores the consistent index only with a write to the key space: entries applied after
  // the last one (a compaction, a new leader's empty entry) leave it behind, and etcd replays them.
  assert.ok((facts.consistentIndex ?? 0) > 0 && (facts.consistentIndex ?? Infinity) <= was.raftIndex, `consistent index ${facts.consistentIndex}, raft index ${was.raftIndex}`);
  const full = await readBoltFacts(join(dataDir, 'member', 'snap', 'db'));
  assert.equal(facts.revision, full.revision);
  assert.equal(facts.compactRevision, full.compactRevision);
  assert.equal(BigInt(facts.consistentIndex ?? -1), full.consistentIndex);
}

function walFiles(dataDir: string): string[] {
  return readdirSync(join(dataDir, 'member', 'wal'))
    .filter((n) => n.endsWith('.wal'))
    .sort();
}

/** A fresh etcd on `dataDir` as a single-member cluster named `name`; resolves with its status, or with its exit. */
async function startOn(dataDir: string, name: string, logDir: string): Promise<{ revision: number } | { exited: number | null }> {
  const [client, peer] = [await freePort(), await freePort()];
  const clientURL = `http://127.0.0.1:${client}`;
  const peerURL = `http://127.0.0.1:${peer}`;
  const etcd = new EtcdProcess({ ...loneMember({ name, dataDir, clientURL, peerURL, token: 'ebs-test', logFile: join(logDir, `${name}-on-copy.log`) }), extraArgs: ['--log-level=warn'] });
  etcd.start();
  try {
    const probe = async (): Promise<{ revision: number }> => {
      const { stdout } = await run('etcdctl', [`--endpoints=${clientURL}`, '--command-timeout=2s', 'endpoint', 'status', '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
      const [row] = JSON.parse(stdout) as { Status: { header: { revision: number } } }[];
      assert.ok(row);
      return { revision: row.Status.header.revision };
    };
    return await Promise.race([eventually(`etcd on ${dataDir} answers`, probe, 30_000), etcd.exited().then((code) => ({ exited: code }))]);
  } finally {
    await etcd.stop();
  }
}

describe('data dir inspection of a single member', { timeout: 150_000 }, () => {
  let cluster: TestCluster;
  let m: TestMember;
  let was: Reported;
  let copies: string;
  /** The stopped member's data dir as it was, copied before each test damages its own copy. */
  const copy = (name: string): string => {
    const dir = join(copies, name);
    cpSync(m.dataDir, dir, { recursive: true });
    return dir;
  };

  before(async () => {
    cluster = await TestCluster.start(1);
    const first = cluster.members[0];
    assert.ok(first);
    m = first;
    copies = join(cluster.dir, 'copies');
    mkdirSync(copies);
    await putMany(cluster, 'early', 300);
    // The time-travel copy (seed 004): the member's own dir as an older VM snapshot would hold it.
    await m.process.stop();
    cpSync(m.dataDir, join(copies, 'older'), { recursive: true });
    cluster.restart(m.name);
    await cluster.waitHealthy();
    await putMany(cluster, 'late', 500);
    await cluster.etcdctl(['put', 'marker', 'flip-me-in-the-middle-of-the-wal']);
    await putMany(cluster, 'after-marker', 200);
    await cluster.etcdctl(['del', 'late/0']);
    await cluster.etcdctl(['compact', '400']);
    was = await reported(cluster, m);
    await m.process.stop();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('matches what etcdctl reported before the stop', async () => {
    const facts = await inspectDataDir(m.dataDir);
    await assertMatches(facts, was, m.dataDir);
    assert.equal(facts.compactRevision, 400);
    assert.ok((facts.dbBytes ?? 0) > 0);
    assert.match(facts.reason, new RegExp(`member ${was.memberId} of cluster ${was.clusterId}`));
  });

  it('a missing dir, an empty dir, and a dir with unrelated files but no member data', async () => {
    assert.equal((await inspectDataDir(join(copies, 'nowhere'))).state, 'missing');
    mkdirSync(join(copies, 'empty'));
    const empty = await inspectDataDir(join(copies, 'empty'));
    assert.equal(empty.state, 'empty', empty.reason);
    mkdirSync(join(copies, 'lost+found', 'member', 'wal'), { recursive: true });
    writeFileSync(join(copies, 'lost+found', 'README'), 'not etcd');
    assert.equal((await inspectDataDir(join(copies, 'lost+found'))).state, 'empty');
    writeFileSync(join(copies, 'a-file'), 'x');
    assert.equal((await inspectDataDir(join(copies, 'a-file'))).state, 'corrupt');
  });

  it('an older copy of the same member: same identity, lower raft index and revision (time travel)', async () => {
    const older = await inspectDataDir(join(copies, 'older'));
    assert.equal(older.state, 'valid', older.reason);
    assert.equal(older.memberId, was.memberId);
    assert.equal(older.clusterId, was.clusterId);
    assert.ok((older.raftIndex ?? Infinity) < was.raftIndex, `${older.raftIndex} < ${was.raftIndex}`);
    assert.ok((older.revision ?? Infinity) < was.revision, `${older.revision} < ${was.revision}`);
    assert.equal(older.revision, 301);
  });

  it('the last WAL record cut short (a crash mid-write) is valid, and etcd starts on it', async () => {
    const dir = copy('torn');
    const files = walFiles(dir);
    const lastName = files.at(-1);
    assert.ok(lastName);
    const path = join(dir, 'member', 'wal', lastName);
    // Where the last record starts, read with the same reader from the untouched dir.
    const reader = new WalReader();
    files.forEach((f, i) => reader.readFile(f, readFileSync(join(dir, 'member', 'wal', f)), i === files.length - 1));
    const lastRecord = reader.finish().lastRecord;
    assert.ok(lastRecord);
    truncateSync(path, lastRecord.offset + 13);
    const facts = await inspectDataDir(dir);
    assert.equal(facts.state, 'valid', facts.reason);
    assert.match(facts.reason, new RegExp(`the last WAL record is torn \\(member/wal/${lastName} at offset ${lastRecord.offset}`));
    assert.equal(facts.memberId, was.memberId);
    assert.ok((facts.raftIndex ?? 0) >= was.raftIndex - 1 && (facts.raftIndex ?? 0) <= was.raftIndex);
    const started = await startOn(dir, m.name, cluster.dir);
    assert.ok('revision' in started, `etcd refused the torn dir: exit ${JSON.stringify(started)}`);
    assert.equal(started.revision, was.revision);
  });

  it('a flipped byte mid-WAL is corrupt, naming the file and the offset', async () => {
    const dir = copy('flipped');
    const marker = Buffer.from('flip-me-in-the-middle-of-the-wal');
    let hit: { file: string; at: number } | undefined;
    for (const f of walFiles(dir)) {
      const at = readFileSync(join(dir, 'member', 'wal', f)).indexOf(marker);
      if (at >= 0) hit = { file: f, at };
    }
    assert.ok(hit, 'the marker value is in the WAL');
    const fd = openSync(join(dir, 'member', 'wal', hit.file), 'r+');
    try {
      writeSync(fd, Buffer.from('F'), 0, 1, hit.at);
    } finally {
      closeSync(fd);
    }
    const facts = await inspectDataDir(dir);
    assert.equal(facts.state, 'corrupt');
    assert.match(facts.reason, new RegExp(`member/wal/${hit.file} at offset \\d+: CRC mismatch`));
    const offset = Number(/at offset (\d+)/.exec(facts.reason)?.[1]);
    assert.ok(offset < hit.at && hit.at - offset < 1024, `the record at ${offset} holds the flipped byte at ${hit.at}`);
    // etcd agrees: it will not start on this dir.
    const started = await startOn(dir, m.name, cluster.dir);
    assert.ok('exited' in started, 'etcd started on a WAL with a broken CRC');
  });

  it('db meta pages: one damaged falls back like bbolt (valid, noted); both damaged is corrupt', async () => {
    const dir = copy('meta');
    const db = join(dir, 'member', 'snap', 'db');
    const bytes = readFileSync(db);
    const pageSize = bytes.readUInt32LE(16 + 8);
    const fd = openSync(db, 'r+');
    try {
      // A byte of meta 0's txid: the checksum no longer matches.
      writeSync(fd, Buffer.from([bytes.readUInt8(16 + 48) ^ 0xff]), 0, 1, 16 + 48);
      const one = await inspectDataDir(dir);
      assert.equal(one.state, 'valid', one.reason);
      assert.match(one.reason, /member\/snap\/db meta page 0: checksum mismatch.*falls back/);
      assert.equal(one.memberId, was.memberId);
      // etcd agrees (on a copy: a running etcd rewrites the meta pages).
      const oneCopy = join(copies, 'meta-one');
      cpSync(dir, oneCopy, { recursive: true });
      const started = await startOn(oneCopy, m.name, cluster.dir);
      assert.ok('revision' in started, `etcd refused a db with one good meta page: ${JSON.stringify(started)}`);
      writeSync(fd, Buffer.from([bytes.readUInt8(pageSize + 16 + 48) ^ 0xff]), 0, 1, pageSize + 16 + 48);
    } finally {
      closeSync(fd);
    }
    const both = await inspectDataDir(dir);
    assert.equal(both.state, 'corrupt');
    assert.match(both.reason, /member\/snap\/db: not a readable bbolt db: meta page 0: checksum mismatch.*meta page 1: checksum mismatch/);
    // The WAL's facts are still reported: the initializer may want to know whose dir this was.
    assert.equal(both.memberId, was.memberId);
    // etcd agrees: bbolt will not open it.
    const started = await startOn(dir, m.name, cluster.dir);
    assert.ok('exited' in started, 'etcd started on a db without a valid meta page');
  });

  it('a db without its WAL, and a WAL without its db, are corrupt', async () => {
    const noWal = copy('no-wal');
    rmSync(join(noWal, 'member', 'wal'), { recursive: true });
    const a = await inspectDataDir(noWal);
    assert.equal(a.state, 'corrupt');
    assert.match(a.reason, /member\/snap\/db exists .* but member\/wal has no WAL files/);
    const noDb = copy('no-db');
    rmSync(join(noDb, 'member', 'snap', 'db'));
    const b = await inspectDataDir(noDb);
    assert.equal(b.state, 'corrupt');
    assert.match(b.reason, /member\/snap\/db is missing/);
  });

  it('a dir made by `etcdctl snapshot restore` is valid at the restored revision', async () => {
    const snap = join(copies, 'snap.db');
    // The member is stopped; its own db is a snapshot file to etcdctl (it skips the hash check).
    cpSync(join(m.dataDir, 'member', 'snap', 'db'), snap);
    const restored = join(copies, 'restored');
    const peer = `http://127.0.0.1:${await freePort()}`;
    // The product's restore call: etcdutl where PATH's etcd has one (3.6 has no etcdctl snapshot restore).
    await snapshotRestore({ file: snap, skipHashCheck: true, name: 'r1', dataDir: restored, initialCluster: `r1=${peer}`, initialAdvertisePeerUrls: [peer], initialClusterToken: 'restored' });
    const facts = await inspectDataDir(restored);
    assert.equal(facts.state, 'valid', facts.reason);
    assert.equal(facts.revision, was.revision);
    assert.notEqual(facts.clusterId, was.clusterId, 'a restore makes a new cluster');
    // A fresh WAL: the member's conf-change entries, committed, and the raft snapshot taken over them.
    assert.equal(facts.raftIndex, 1);
    assert.equal(facts.commitIndex, 1);
    assert.equal(facts.consistentIndex, 1);
  });
});

describe('data dir inspection of a three-member cluster', { timeout: 150_000 }, () => {
  let cluster: TestCluster;
  let other: TestCluster;
  before(async () => {
    [cluster, other] = await Promise.all([TestCluster.start(3), TestCluster.start(1, { token: 'another-cluster' })]);
  });
  after(async () => {
    await Promise.all([cluster?.stop(), other?.stop()]);
  });

  it('every member matches etcdctl; a member of another cluster differs in cluster ID', async () => {
    await putMany(cluster, 'three', 400);
    const leader = await cluster.leader();
    // Followers first: a leader stepping down hands over leadership, and the new leader's first entry
    // would move the raft index past what was reported.
    const order = [...cluster.members.filter((x) => x.name !== leader), cluster.member(leader)];
    const was = new Map<string, Reported>();
    await eventually(
      'every member has applied the same index',
      async () => {
        const all = await Promise.all(cluster.members.map((x) => reported(cluster, x)));
        if (new Set(all.map((r) => r.raftIndex)).size !== 1) return undefined;
        cluster.members.forEach((x, i) => was.set(x.name, all[i] as Reported));
        return true;
      },
      30_000,
    );
    for (const x of order) await x.process.stop();

    const facts = await Promise.all(cluster.members.map((x) => inspectDataDir(x.dataDir)));
    for (const [i, x] of cluster.members.entries()) {
      const f = facts[i] as DataDirFacts;
      await assertMatches(f, was.get(x.name) as Reported, x.dataDir);
    }
    assert.equal(new Set(facts.map((f) => f.memberId)).size, 3);
    assert.equal(new Set(facts.map((f) => f.clusterId)).size, 1);

    const o = other.members[0] as TestMember;
    await o.process.stop();
    const foreign = await inspectDataDir(o.dataDir);
    assert.equal(foreign.state, 'valid', foreign.reason);
    assert.notEqual(foreign.clusterId, facts[0]?.clusterId);
  });
});

describe('data dir inspection after a real crash', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start(1);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a member SIGKILLed in the middle of writes reads as valid, and etcd starts on it at least at the inspected revision', async () => {
    const m = cluster.members[0] as TestMember;
    await putMany(cluster, 'before-crash', 300);
    const client = new Etcd3({ hosts: cluster.endpoints });
    let acknowledged = 0;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; ; i++) {
        await client.put(`crash/${w}/${i}`).value('x'.repeat(500));
        acknowledged++;
      }
    });
    // Handled from the start: the writers fail the moment the member dies.
    const settled = Promise.allSettled(writers);
    await eventually('writes under way', async () => (acknowledged > 200 ? true : undefined), 30_000, 20);
    const acknowledgedBeforeKill = acknowledged;
    await cluster.kill(m.name);
    await settled;
    client.close();

    const facts = await inspectDataDir(m.dataDir);
    assert.equal(facts.state, 'valid', facts.reason);
    // The db commits in batches, so it may lag the WAL; the WAL holds every acknowledged write.
    assert.ok((facts.consistentIndex ?? 0) > 0);
    assert.ok((facts.raftIndex ?? 0) >= 300 + acknowledgedBeforeKill, `raft index ${facts.raftIndex}, ${300 + acknowledgedBeforeKill} writes acknowledged`);
    assert.ok((facts.revision ?? 0) > 300, `revision ${facts.revision}`);
    cluster.restart(m.name);
    await cluster.waitHealthy();
    const after = await reported(cluster, m);
    assert.equal(after.memberId, facts.memberId);
    assert.equal(after.clusterId, facts.clusterId);
    // etcd replays the WAL entries the db had not yet stored: never below what the db holds.
    assert.ok(after.revision >= (facts.revision ?? Infinity), `etcd at ${after.revision}, inspected ${facts.revision}`);
    assert.ok(after.raftIndex >= (facts.raftIndex ?? Infinity), `etcd at index ${after.raftIndex}, inspected ${facts.raftIndex}`);
    assert.ok(after.revision >= 1 + 300 + acknowledgedBeforeKill, 'no acknowledged write lost');
  });
});
