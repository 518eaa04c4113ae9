/**
 * What one replay transaction costs the restoring process, per transport: etcd3's client (its
 * pool and cockatiel policies around each call), grpc-js alone (one channel, no pool, no policy),
 * etcd's gRPC wire format on node:http2 (one stream per call, as kv-channel.ts did before), and
 * src/etcd/kv-channel.ts (the same wire format framed by src/etcd/h2-connection.ts). Each sends the same guarded
 * one-put transactions (one compare, 100-byte values over 10,000 keys) with `--window` of them in
 * flight to the same temporary etcd; reported: transactions/s, Node CPU µs per call (this
 * process's user + system time) and the etcd's CPU µs per call (/proc). The transports take turns,
 * `--rounds` times, since the machine is shared.
 *
 *   tsx bench/replay-transport.ts [--calls 20000] [--window 16] [--rounds 2] [--out bench/results/replay-transport.txt]
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, constants } from 'node:http2';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { KvChannel } from '../src/etcd/kv-channel.js';
import { freeLoopbackPort, TemporaryEtcd, type TxnCompare, type TxnOp } from '../src/etcd/temporary.js';
import { etcdTools, etcdVersion } from '../src/etcd/tools.js';
import { createLogger } from '../src/logger.js';
import { cpuSecondsOf } from './proc-peak.js';

function flag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] as string) : def;
}
const CALLS = Number(flag('calls', '20000'));
const WINDOW = Number(flag('window', '16'));
const ROUNDS = Number(flag('rounds', '2'));
const OUT = flag('out', 'bench/results/replay-transport.txt');

type Txn = (compare: TxnCompare[], success: TxnOp[]) => Promise<unknown>;

/** grpc-js's generated client for etcd's KV service, from etcd3's rpc.proto, on one channel. */
function grpcJsTxn(url: string): { txn: Txn; close: () => void } {
  const def = loadSync(createRequire(import.meta.url).resolve('etcd3/proto/rpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const KV = (grpc.loadPackageDefinition(def) as unknown as { etcdserverpb: { KV: grpc.ServiceClientConstructor } }).etcdserverpb.KV;
  const client = new KV(url.replace('http://', ''), grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Txn(req: object, opts: grpc.CallOptions, cb: (err: Error | null, res: unknown) => void): void;
  };
  const txn: Txn = (compare, success) =>
    new Promise((resolve, reject) => client.Txn({ compare, success, failure: [] }, { deadline: Date.now() + 120_000 }, (err, res) => (err ? reject(err) : resolve(res))));
  return { txn, close: () => client.close() };
}

/** gRPC unary Txn on node:http2: a stream per call, the message length-prefixed, the status in trailers. */
function nodeHttp2Txn(url: string): { txn: Txn; close: () => void } {
  const def = loadSync(createRequire(import.meta.url).resolve('etcd3/proto/rpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const m = (def['etcdserverpb.KV'] as Record<string, { requestSerialize(o: object): Buffer; responseDeserialize(b: Buffer): unknown }>)['Txn'] as {
    requestSerialize(o: object): Buffer;
    responseDeserialize(b: Buffer): unknown;
  };
  const session = connect(url);
  const txn: Txn = (compare, success) =>
    new Promise((resolve, reject) => {
      const message = m.requestSerialize({ compare, success, failure: [] });
      const stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: '/etcdserverpb.KV/Txn',
        [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        [constants.HTTP2_HEADER_TE]: 'trailers',
      });
      const chunks: Buffer[] = [];
      let status: unknown;
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('trailers', (h) => (status = h['grpc-status']));
      stream.on('error', reject);
      stream.on('close', () => (status === '0' ? resolve(m.responseDeserialize(Buffer.concat(chunks).subarray(5))) : reject(new Error(`grpc-status ${String(status)}`))));
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(message.length, 1);
      stream.end(Buffer.concat([prefix, message]));
    });
  return { txn, close: () => session.close() };
}

async function run(etcdPid: number, txn: Txn): Promise<{ rate: number; nodeUs: number; etcdUs: number }> {
  const value = Buffer.alloc(100, 7);
  let next = 0;
  const etcd0 = cpuSecondsOf(etcdPid) ?? 0;
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  const worker = async (): Promise<void> => {
    while (next < CALLS) {
      const key = Buffer.from(`/bench/${next++ % 10_000}`);
      await txn([{ key, target: 'Mod', result: 'Less', mod_revision: '1000000000' }], [{ request_put: { key, value } }]);
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  const seconds = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { rate: CALLS / seconds, nodeUs: (cpu.user + cpu.system) / CALLS, etcdUs: (((cpuSecondsOf(etcdPid) ?? 0) - etcd0) * 1e6) / CALLS };
}

const dir = mkdtempSync(join(tmpdir(), 'ebs-bench-transport-'));
const etcd = await TemporaryEtcd.start({ dataDir: join(dir, 'data'), name: 'bench', peerPort: await freeLoopbackPort(), logFile: join(dir, 'etcd.log'), log: createLogger('warn') });
try {
  const { version } = await etcdVersion(etcdTools());
  const grpcJs = grpcJsTxn(etcd.clientURL);
  const nodeHttp2 = nodeHttp2Txn(etcd.clientURL);
  const channel = new KvChannel(etcd.clientURL, { deadlineMs: 120_000 });
  const transports: [string, Txn][] = [
    ['etcd3 client (kv.txn)', async (compare, success) => etcd.client.kv.txn({ compare, success, failure: [] })],
    ['grpc-js, one channel, no policies', grpcJs.txn],
    ['node:http2, a stream per call', nodeHttp2.txn],
    ['kv-channel.ts (h2-connection.ts)', (compare, success) => channel.txn(compare, success)],
  ];
  // Warm-up: JIT and connections, not measured.
  for (const [, txn] of transports) for (let i = 0; i < 500; i++) await txn([], [{ request_put: { key: Buffer.from('/warm'), value: Buffer.from('w') } }]);
  const lines = [
    `# tsx bench/replay-transport.ts --calls ${CALLS} --window ${WINDOW} --rounds ${ROUNDS}, ${new Date().toISOString().slice(0, 10)}, etcd ${version} (the restore's temporary etcd: one Go thread, --unsafe-no-fsync), Node ${process.version}, 2 cores shared with other jobs`,
    '',
    'round  transport                            txn/s  Node CPU us/call  etcd CPU us/call',
  ];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [name, txn] of transports) {
      const r = await run(etcd.process.pid as number, txn);
      lines.push(`${String(round).padStart(5)}  ${name.padEnd(35)}  ${r.rate.toFixed(0).padStart(5)}  ${r.nodeUs.toFixed(0).padStart(16)}  ${r.etcdUs.toFixed(0).padStart(16)}`);
      console.error(lines.at(-1));
    }
  }
  grpcJs.close();
  nodeHttp2.close();
  channel.close();
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, text);
} finally {
  await etcd.stop();
  rmSync(dir, { recursive: true, force: true });
}
