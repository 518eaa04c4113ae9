/**
 * Peak memory of a process tree, sampled from /proc while it runs: what the restore bench reports
 * for the restoring process, the etcds it starts, and gardener's etcdbrctl (whose etcd is embedded).
 */
import { readdirSync, readFileSync } from 'node:fs';

function statusOf(pid: number | string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined; // gone between the listing and the read
  }
}
/** utime + stime of a process, in seconds (USER_HZ is 100 on Linux). */
export function cpuSecondsOf(pid: number | string): number | undefined {
  try {
    // Fields after the parenthesised command name, which may itself hold spaces.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}
const kB = (status: string | undefined, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status ?? '')?.[1] ?? 0);

export interface TreePeaks {
  /** VmHWM of the root process itself, MiB (0 when it exited before the first sample). */
  root: number;
  /** The highest VmHWM among the root's children named `childName`, MiB. */
  child: number;
  /** The highest sum of the root's and those children's VmRSS at one sampling instant, MiB. */
  total: number;
  /** CPU time (user + system) of the root and of those children, seconds, as last sampled. */
  rootCpuSeconds: number;
  childCpuSeconds: number;
}

/**
 * Samples `root` and its direct children named `childName` every `everyMs` until stop(). VmHWM is
 * a high-water mark, so a sample misses only a peak reached in the last interval before exit (and
 * the CPU time spent in it).
 */
export function samplePeaks(root: number, childName: string, everyMs = 200): { stop(): TreePeaks } {
  const peaks = new Map<number, number>();
  let rootPeak = 0;
  let total = 0;
  let rootCpu = 0;
  const childCpu = new Map<number, number>();
  const sample = (): void => {
    const own = statusOf(root);
    rootPeak = Math.max(rootPeak, kB(own, 'VmHWM'));
    rootCpu = cpuSecondsOf(root) ?? rootCpu;
    let now = kB(own, 'VmRSS');
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const status = statusOf(name);
      if (!status || !new RegExp(`^Name:\\s+${childName}$`, 'm').test(status) || Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== root) continue;
      peaks.set(Number(name), Math.max(peaks.get(Number(name)) ?? 0, kB(status, 'VmHWM')));
      now += kB(status, 'VmRSS');
      childCpu.set(Number(name), cpuSecondsOf(name) ?? childCpu.get(Number(name)) ?? 0);
    }
    total = Math.max(total, now);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      const mib = (k: number): number => Math.round(k / 1024);
      const childCpuSeconds = [...childCpu.values()].reduce((a, b) => a + b, 0);
      return { root: mib(rootPeak), child: mib(Math.max(0, ...peaks.values())), total: mib(total), rootCpuSeconds: rootCpu, childCpuSeconds };
    },
  };
}
