/**
 * gardener etcd-backup-restore's `etcdbrctl restore` of the bench's chain, from the same folder
 * (its `Local` provider, as test/restore/gardener-interop.e2e.test.ts drives it) into a data dir on
 * disk: its total time, its peak RSS (its etcd is embedded, so one process holds both) and, from
 * its log, when it started and finished applying deltas.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freeLoopbackPort } from '../src/etcd/temporary.js';
import { samplePeaks } from './proc-peak.js';
import { GARDENER_CONTAINER, GARDENER_PREFIX } from './restore-chain.js';

export interface GardenerRun {
  seconds: number;
  peakRssMiB: number;
  /** CPU time (user + system), seconds, as last sampled before it exited. */
  cpuSeconds: number;
  /** From its log's first "Applying delta snapshot" to its last delta applied; undefined when the log lacks either. */
  deltaSeconds: number | undefined;
  /** The restored member: `<dir>/data`, named `name`, peer URL `peerURL`. */
  dir: string;
  name: string;
  peerURL: string;
}

/** gardener's log lines carry `time="<RFC 3339, seconds>"`; the milliseconds are when we read them. */
interface Stamped {
  at: number;
  line: string;
}

export async function gardenerRestore(binary: string, home: string, dir: string): Promise<GardenerRun> {
  const name = 'gardener';
  const peerURL = `http://127.0.0.1:${await freeLoopbackPort()}`;
  const args = [
    'restore',
    ...['--storage-provider', 'Local', '--store-container', GARDENER_CONTAINER, '--store-prefix', GARDENER_PREFIX],
    ...['--data-dir', join(dir, 'data'), '--restoration-temp-snapshots-dir', join(dir, 'restoration.tmp'), '--snapstore-temp-directory', join(dir, 'tmp')],
    ...['--name', name, '--initial-cluster', `${name}=${peerURL}`, '--initial-advertise-peer-urls', peerURL, '--initial-cluster-token', 'bench'],
    ...['--embedded-etcd-quota-bytes', String(16 * 2 ** 30), '--max-request-bytes', String(2 ** 30), '--max-txn-ops', '10000000'],
  ];
  const t = performance.now();
  const child = spawn(binary, args, { env: { ...process.env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  const peaks = samplePeaks(child.pid as number, 'etcd');
  const lines: Stamped[] = [];
  let partial = '';
  const read = (d: Buffer): void => {
    const at = performance.now();
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) lines.push({ at, line });
  };
  child.stdout.on('data', read);
  child.stderr.on('data', read);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const seconds = (performance.now() - t) / 1000;
  const { root, rootCpuSeconds } = peaks.stop();
  writeFileSync(join(dir, 'etcdbrctl.log'), lines.map((l) => l.line).join('\n') + '\n' + partial);
  if (code !== 0)
    throw new Error(
      `etcdbrctl restore exited with ${code}; see ${join(dir, 'etcdbrctl.log')}:\n${lines
        .slice(-20)
        .map((l) => l.line)
        .join('\n')}`,
    );
  const first = lines.find((l) => /Applying delta snapshot/i.test(l.line));
  const last = lines.findLast((l) => /Applying delta snapshot/i.test(l.line) || /applied all delta/i.test(l.line));
  const end = lines.find((l) => first && l.at >= last!.at && /(Restoration complete|Successfully restored|Cleanup complete|Closing embedded etcd|Stopping embedded etcd)/i.test(l.line));
  return { seconds, peakRssMiB: root, cpuSeconds: rootCpuSeconds, deltaSeconds: first && end ? (end.at - first.at) / 1000 : undefined, dir, name, peerURL };
}
