import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BoltFileFacts } from '../../src/etcd/bolt.js';
import { judgeDataDir, type DataDirFindings } from '../../src/etcd/datadir.js';
import type { WalFacts } from '../../src/etcd/wal.js';

const wal: WalFacts = {
  memberId: '8e9e05c52164694d',
  clusterId: 'cdf818194e3a8c32',
  lastIndex: 1200,
  lastTerm: 4,
  snapshotIndex: 1000,
  snapshotTerm: 3,
  hardState: { term: 4, vote: '8e9e05c52164694d', commit: 1199 },
  entries: 200,
  files: 2,
};
const bolt: BoltFileFacts = { revision: 950, compactRevision: 900, consistentIndex: 1198n, hasTerm: false, pageSize: 4096, pageCount: 600, fileBytes: 4096 * 600, pagesRead: 5 };
const found = (over: Partial<DataDirFindings> = {}): DataDirFindings => ({
  dir: '/var/lib/etcd',
  exists: 'yes',
  walFiles: ['0000000000000000-0000000000000000.wal', '0000000000000001-00000000000003e9.wal'],
  db: { bytes: 4096 * 600 },
  wal,
  bolt,
  ...over,
});

describe('judgeDataDir', () => {
  it('valid: the facts of WAL and db together, and a reason an operator can read', () => {
    const j = judgeDataDir(found());
    assert.deepEqual(j, {
      state: 'valid',
      reason: j.reason,
      memberId: '8e9e05c52164694d',
      clusterId: 'cdf818194e3a8c32',
      raftIndex: 1200,
      raftTerm: 4,
      commitIndex: 1199,
      revision: 950,
      compactRevision: 900,
      consistentIndex: 1198,
      dbBytes: 4096 * 600,
      writtenBy: 'etcd 3.4 (no raft term in the db)',
    });
    assert.match(j.reason, /member 8e9e05c52164694d of cluster cdf818194e3a8c32: raft index 1200 \(term 4, commit 1199\), revision 950/);
  });

  it('tells the release that wrote the db by what its meta bucket holds', () => {
    assert.equal(judgeDataDir(found({ bolt: { ...bolt, hasTerm: true } })).writtenBy, 'etcd 3.5 (or 3.6 before it recorded its storage version)');
    assert.equal(judgeDataDir(found({ bolt: { ...bolt, hasTerm: true, storageVersion: '3.6.0' } })).writtenBy, 'etcd 3.6 (storage version 3.6.0)');
  });

  it('the raft snapshot counts when the log holds nothing after it', () => {
    const j = judgeDataDir(found({ wal: { ...wal, lastIndex: 0, lastTerm: 0, snapshotIndex: 1000, snapshotTerm: 3 } }));
    assert.deepEqual([j.raftIndex, j.raftTerm], [1000, 3]);
  });

  it('missing, not a directory, empty', () => {
    assert.equal(judgeDataDir(found({ exists: 'missing' })).state, 'missing');
    assert.equal(judgeDataDir(found({ exists: 'not-a-dir' })).state, 'corrupt');
    const empty = judgeDataDir({ dir: '/d', exists: 'yes', walFiles: [], db: 'missing' });
    assert.equal(empty.state, 'empty');
    assert.match(empty.reason, /no WAL files in member\/wal, no member\/snap\/db/);
  });

  it('one half without the other is corrupt', () => {
    const noWal = judgeDataDir({ dir: '/d', exists: 'yes', walFiles: [], db: { bytes: 8192 } });
    assert.equal(noWal.state, 'corrupt');
    assert.equal(noWal.dbBytes, 8192);
    const noDb = judgeDataDir({ dir: '/d', exists: 'yes', walFiles: ['0000000000000000-0000000000000000.wal'], db: 'missing' });
    assert.equal(noDb.state, 'corrupt');
    assert.match(noDb.reason, /member\/snap\/db is missing/);
  });

  it('a WAL sequence gap, a damaged WAL, a damaged db: corrupt, with whatever was still learned', () => {
    const gap = judgeDataDir({ dir: '/d', exists: 'yes', walFiles: [], db: { bytes: 8192 }, wal: { error: 'WAL sequence has a gap: a is followed by b' } });
    assert.equal(gap.state, 'corrupt');
    assert.match(gap.reason, /gap/);
    const badWal = judgeDataDir(found({ wal: { error: 'member/wal/x.wal at offset 4096: CRC mismatch' } }));
    assert.equal(badWal.state, 'corrupt');
    assert.equal(badWal.reason, 'member/wal/x.wal at offset 4096: CRC mismatch');
    assert.equal(badWal.revision, 950, 'the db was still read');
    const badDb = judgeDataDir(found({ bolt: { error: 'member/snap/db: not a readable bbolt db' } }));
    assert.equal(badDb.state, 'corrupt');
    assert.equal(badDb.memberId, wal.memberId, 'whose dir it was is still known');
    const both = judgeDataDir(found({ wal: { error: 'w' }, bolt: { error: 'b' } }));
    assert.equal(both.reason, 'w; b');
  });

  it('a WAL without a metadata record cannot say whose it is: corrupt', () => {
    const { memberId: _m, clusterId: _c, ...anonymous } = wal;
    assert.equal(judgeDataDir(found({ wal: anonymous })).state, 'corrupt');
  });

  it('a torn tail, one damaged meta page, a db a little ahead of the log: valid, and said so', () => {
    const j = judgeDataDir(
      found({
        wal: { ...wal, tornTail: { file: 'member/wal/0000000000000001-00000000000003e9.wal', offset: 81920, problem: 'the file ends 12 bytes short' } },
        bolt: { ...bolt, damagedMeta: 'meta page 1: checksum mismatch', consistentIndex: 1201n },
      }),
    );
    assert.equal(j.state, 'valid');
    assert.match(j.reason, /the last WAL record is torn \(member\/wal\/0000000000000001-00000000000003e9\.wal at offset 81920/);
    assert.match(j.reason, /meta page 1: checksum mismatch; bbolt falls back/);
    assert.match(j.reason, /applied raft index 1201, beyond the WAL's last index 1200/);
  });
});
