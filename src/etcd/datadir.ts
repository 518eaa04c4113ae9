import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BoltFormatError, inspectBoltFile, type BoltFileFacts } from './bolt.js';
import { orderWalNames, WalFormatError, WalReader, type WalFacts } from './wal.js';

export type DataDirState = 'missing' | 'empty' | 'valid' | 'corrupt';

/** What a member's data dir holds, read without starting etcd. */
export interface DataDirFacts {
  state: DataDirState;
  /** Human-readable: why corrupt / what was found. */
  reason: string;
  /** Hex, no padding, like memberIdHex() in src/etcd/members.ts. */
  memberId?: string;
  clusterId?: string;
  /** Last entry index in the WAL (or in the latest raft snapshot if larger). */
  raftIndex?: number;
  raftTerm?: number;
  /** From the last HardState. */
  commitIndex?: number;
  /**
   * The db's current revision, as stored. After a crash the db can lag the WAL (it commits in
   * batches): etcd replays the entries after consistentIndex at start, so the member may come up
   * higher. raftIndex is what tells an older copy of a dir from a newer one (seed 004).
   */
  revision?: number;
  compactRevision?: number;
  consistentIndex?: number;
  dbBytes?: number;
  /** Which etcd release wrote the db, as far as its meta bucket tells (see writtenBy()). */
  writtenBy?: string;
  durationMs: number;
}

/**
 * The etcd release that wrote a db, from what its meta bucket holds: 3.6 records a storage version
 * (once the cluster's version is known, moments after a first start), 3.5 on writes the raft term
 * beside the consistent index, 3.4 writes neither. A db opened by a newer release afterwards tells
 * the newest that wrote it. Pure.
 */
export function writtenBy(bolt: Pick<BoltFileFacts, 'storageVersion' | 'hasTerm'>): string {
  if (bolt.storageVersion !== undefined) return `etcd ${bolt.storageVersion.split('.').slice(0, 2).join('.')} (storage version ${bolt.storageVersion})`;
  return bolt.hasTerm ? 'etcd 3.5 (or 3.6 before it recorded its storage version)' : 'etcd 3.4 (no raft term in the db)';
}

const WAL_DIR = join('member', 'wal');
const DB_FILE = join('member', 'snap', 'db');
const WAL_READ_SIZE = 1 << 20;

/** What the I/O found, before any judgement; `judgeDataDir` turns it into DataDirFacts. */
export interface DataDirFindings {
  dir: string;
  /** 'missing': no such path; 'not-a-dir': something else is there. */
  exists: 'yes' | 'missing' | 'not-a-dir';
  walFiles: string[];
  db: 'missing' | { bytes: number };
  wal?: WalFacts | { error: string };
  bolt?: BoltFileFacts | { error: string };
}

/**
 * Inspects an etcd data dir (3.4 to 3.6: the WAL and db formats are the same): its layout, the whole WAL (CRC chain, member and cluster ID, last
 * raft index and term, HardState), and the db's meta pages and the paths to its revision and
 * consistent index. Never throws for what is on disk: damage is reported as state 'corrupt'.
 */
export async function inspectDataDir(dir: string): Promise<DataDirFacts> {
  const started = performance.now();
  const findings = await findDataDir(dir);
  return { ...judgeDataDir(findings), durationMs: Math.round((performance.now() - started) * 10) / 10 };
}

async function findDataDir(dir: string): Promise<DataDirFindings> {
  const base: DataDirFindings = { dir, exists: 'yes', walFiles: [], db: 'missing' };
  try {
    if (!(await stat(dir)).isDirectory()) return { ...base, exists: 'not-a-dir' };
  } catch (err) {
    if (isNotFound(err)) return { ...base, exists: 'missing' };
    throw err;
  }
  let names: string[] = [];
  try {
    names = await readdir(join(dir, WAL_DIR));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let db: DataDirFindings['db'] = 'missing';
  try {
    const s = await stat(join(dir, DB_FILE));
    if (s.isFile()) db = { bytes: s.size };
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let walFiles: string[];
  try {
    walFiles = orderWalNames(names);
  } catch (err) {
    return { ...base, walFiles: [], db, wal: { error: (err as Error).message } };
  }
  const findings: DataDirFindings = { ...base, walFiles, db };
  if (walFiles.length === 0 || db === 'missing') return findings;
  // The two reads touch different files: overlap their waiting.
  const [wal, bolt] = await Promise.all([readWal(join(dir, WAL_DIR), walFiles), readBolt(join(dir, DB_FILE))]);
  return { ...findings, wal, bolt };
}

async function readWal(walDir: string, files: string[]): Promise<WalFacts | { error: string }> {
  const reader = new WalReader();
  // One buffer for every read: a fresh one per chunk left the garbage collector behind by tens of
  // MB on a WAL of 1 MB records (the reader copies what it keeps).
  const buf = Buffer.allocUnsafe(WAL_READ_SIZE);
  try {
    for (const [i, name] of files.entries()) {
      const handle = await open(join(walDir, name), 'r');
      try {
        await reader.readSegment(join(WAL_DIR, name), i === files.length - 1, readChunks(handle, buf));
      } finally {
        await handle.close();
      }
    }
    return reader.finish();
  } catch (err) {
    if (err instanceof WalFormatError) return { error: err.message };
    throw err;
  }
}

async function* readChunks(handle: FileHandle, buf: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; ;) {
    const { bytesRead } = await handle.read(buf, 0, buf.length, at);
    if (bytesRead === 0) return;
    at += bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

async function readBolt(path: string): Promise<BoltFileFacts | { error: string }> {
  try {
    return await inspectBoltFile(path);
  } catch (err) {
    if (err instanceof BoltFormatError) return { error: `${DB_FILE}: ${err.message}` };
    throw err;
  }
}

/** The pure half: what the findings mean for the initializer. */
export function judgeDataDir(f: DataDirFindings): Omit<DataDirFacts, 'durationMs'> {
  if (f.exists === 'missing') return { state: 'missing', reason: `${f.dir} does not exist` };
  if (f.exists === 'not-a-dir') return { state: 'corrupt', reason: `${f.dir} is not a directory` };
  const dbBytes = f.db === 'missing' ? undefined : f.db.bytes;
  const sized = dbBytes === undefined ? {} : { dbBytes };
  if (f.wal !== undefined && 'error' in f.wal && f.walFiles.length === 0) return { state: 'corrupt', reason: f.wal.error, ...sized };
  if (f.walFiles.length === 0 && f.db === 'missing') return { state: 'empty', reason: `${f.dir} holds no member data (no WAL files in ${WAL_DIR}, no ${DB_FILE})` };
  if (f.walFiles.length === 0) return { state: 'corrupt', reason: `${DB_FILE} exists (${dbBytes} bytes) but ${WAL_DIR} has no WAL files: the raft log and the member's identity are lost`, ...sized };
  if (f.db === 'missing')
    return {
      state: 'corrupt',
      reason: `${WAL_DIR} has ${f.walFiles.length} WAL files but ${DB_FILE} is missing: the applied key space is gone (etcd could rebuild it only if the log still began at index 1)`,
    };

  const problems: string[] = [];
  const notes: string[] = [];
  let facts: Omit<DataDirFacts, 'durationMs' | 'state' | 'reason'> = { ...sized };
  const wal = f.wal;
  if (wal === undefined || 'error' in wal) {
    problems.push(wal?.error ?? 'the WAL was not read');
  } else {
    const snapshotNewer = wal.snapshotIndex > wal.lastIndex;
    facts = {
      ...facts,
      ...(wal.memberId === undefined ? {} : { memberId: wal.memberId }),
      ...(wal.clusterId === undefined ? {} : { clusterId: wal.clusterId }),
      raftIndex: snapshotNewer ? wal.snapshotIndex : wal.lastIndex,
      raftTerm: snapshotNewer ? wal.snapshotTerm : wal.lastTerm,
      ...(wal.hardState === undefined ? {} : { commitIndex: wal.hardState.commit }),
    };
    if (wal.memberId === undefined || wal.clusterId === undefined) problems.push(`${WAL_DIR} has no metadata record: whose member this is cannot be told`);
    if (wal.tornTail !== undefined)
      notes.push(`the last WAL record is torn (${wal.tornTail.file} at offset ${wal.tornTail.offset}: ${wal.tornTail.problem}); etcd truncates it at start, as after any crash mid-write`);
  }
  const bolt = f.bolt;
  if (bolt === undefined || 'error' in bolt) {
    problems.push(bolt?.error ?? 'the db was not read');
  } else {
    facts = { ...facts, revision: bolt.revision, compactRevision: bolt.compactRevision, consistentIndex: Number(bolt.consistentIndex), writtenBy: writtenBy(bolt) };
    if (bolt.damagedMeta !== undefined) notes.push(`${DB_FILE} ${bolt.damagedMeta}; bbolt falls back to the other meta page`);
    if (facts.raftIndex !== undefined && bolt.consistentIndex > BigInt(facts.raftIndex)) {
      // etcd may apply an entry before its own WAL write is synced, so after a crash the db can be a
      // little ahead; it is a fact for the initializer, not damage.
      notes.push(`the db has applied raft index ${bolt.consistentIndex}, beyond the WAL's last index ${facts.raftIndex}`);
    }
  }
  if (problems.length > 0) return { state: 'corrupt', reason: problems.join('; '), ...facts };
  const summary = `member ${facts.memberId} of cluster ${facts.clusterId}: raft index ${facts.raftIndex} (term ${facts.raftTerm}, commit ${facts.commitIndex ?? 'unknown'}), revision ${facts.revision} (compacted at ${facts.compactRevision}), consistent index ${facts.consistentIndex}, written by ${facts.writtenBy}`;
  return { state: 'valid', reason: [summary, ...notes].join('; '), ...facts };
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
