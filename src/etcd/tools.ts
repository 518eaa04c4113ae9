/**
 * Which etcd programs a restore runs. They come from one folder so that one release does every step:
 * a data dir restored by one release's etcdutl and opened by another's etcd can be refused (3.5
 * cannot open what 3.6 wrote without `etcdutl migrate`), and replaying into a temporary etcd of
 * another minor than the backup's cluster would write another storage version.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EtcdTools {
  etcd: string;
  etcdctl: string;
  /** From 3.5 on; 3.4 restores with `etcdctl snapshot restore`, and 3.6's etcdctl no longer can. */
  etcdutl?: string;
  /** As `etcd --version` prints it (3.5.16), once read by withVersion(). */
  version?: string;
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first `name` in PATH that can be run, like the shell finds it. */
export function findInPath(name: string, path = process.env['PATH'] ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    if (executable(file)) return file;
  }
  return undefined;
}

export class EtcdToolsError extends Error {
  override name = 'EtcdToolsError';
}

/**
 * The folder for etcd `minor` among `names`, the entries of a folder that holds one folder per minor
 * version (`v3.5`, `v3.6`, as the image ships them): that minor's, or the newest when no minor is
 * asked for. Undefined when the asked minor is not there: running another release's tools could
 * write a data dir the cluster's etcd cannot open. Pure.
 */
export function minorDir(names: readonly string[], minor?: string): string | undefined {
  const minors = names.filter((n) => /^v\d+\.\d+$/.test(n));
  if (minor !== undefined) return minors.find((n) => n === `v${minor}`);
  const key = (n: string): number[] => n.slice(1).split('.').map(Number);
  return minors.sort((a, b) => (key(b)[0] ?? 0) - (key(a)[0] ?? 0) || (key(b)[1] ?? 0) - (key(a)[1] ?? 0))[0];
}

/** The folders of `dir` that hold an etcd; symlinks to folders count (v3.6 -> /opt/etcd-v3.6.5). */
function subfolders(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => isFolder(join(dir, name)) && executable(join(dir, name, 'etcd')));
  } catch {
    return [];
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The folder of one release's tools that `etcdTools(binDir, minor)` takes: `binDir` itself when it
 * holds an etcd, else its folder for `minor` (or the newest). Undefined without a `binDir` (PATH).
 * For passing on to code that takes one release's folder (a restore).
 */
export function releaseBinDir(binDir: string | undefined, minor?: string): string | undefined {
  return binDir ? dirname(etcdTools(binDir, minor).etcd) : undefined;
}

/** One release's tools in `dir`, which holds its etcd. */
function toolsIn(dir: string): EtcdTools {
  const etcdutl = join(dir, 'etcdutl');
  return { etcd: join(dir, 'etcd'), etcdctl: join(dir, 'etcdctl'), ...(executable(etcdutl) ? { etcdutl } : {}) };
}

/**
 * The tools in `binDir` (--etcd-bin-dir), or else those beside the `etcd` in PATH: not each found in
 * PATH on its own, since a PATH can mix releases (Debian's etcd in /usr/bin, a newer etcdutl in
 * /usr/local/bin). etcdutl is taken only where it is. Without any etcd in PATH the bare names stay,
 * and running them fails with the usual ENOENT. A `binDir` without an etcd of its own but with one
 * folder per minor (v3.5/, v3.6/) gives `minor`'s tools, or the newest release's when the minor is
 * not known.
 */
export function etcdTools(binDir?: string, minor?: string): EtcdTools {
  if (binDir) {
    if (executable(join(binDir, 'etcd'))) return toolsIn(binDir);
    const found = subfolders(binDir);
    if (found.length === 0) throw new EtcdToolsError(`--etcd-bin-dir ${binDir} has no etcd that can be run (nor folders v3.5/, v3.6/ holding one)`);
    const dir = minorDir(found, minor);
    if (!dir) throw new EtcdToolsError(`--etcd-bin-dir ${binDir} has no tools for etcd ${minor ?? ''} (it has ${found.sort().join(', ')})`);
    return toolsIn(join(binDir, dir));
  }
  const etcd = findInPath('etcd');
  if (!etcd) return { etcd: 'etcd', etcdctl: 'etcdctl' };
  const dir = dirname(etcd);
  const etcdutl = join(dir, 'etcdutl');
  const etcdctl = join(dir, 'etcdctl');
  return { etcd, etcdctl: executable(etcdctl) ? etcdctl : 'etcdctl', ...(executable(etcdutl) ? { etcdutl } : {}) };
}

/** The version in `etcd --version` output ("etcd Version: 3.5.16"), or undefined when it has none. */
export function parseEtcdVersion(output: string): string | undefined {
  return /^etcd Version:\s*v?(\d+\.\d+\.\d+\S*)/m.exec(output)?.[1];
}

/** "3.5" of "3.5.16" (and of "3.6.0-rc.1"). */
export function minorOf(version: string): string {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  if (!m) throw new EtcdToolsError(`not an etcd version: ${version}`);
  return `${m[1]}.${m[2]}`;
}

/** Runs `etcd --version` of these tools. */
export async function etcdVersion(tools: Pick<EtcdTools, 'etcd'>): Promise<{ version: string; minor: string }> {
  let out: string;
  try {
    out = (await run(tools.etcd, ['--version'], { timeout: 10_000 })).stdout;
  } catch (err) {
    throw new EtcdToolsError(`${tools.etcd} --version failed: ${(err as Error).message}`, { cause: err });
  }
  const version = parseEtcdVersion(out);
  if (!version) throw new EtcdToolsError(`${tools.etcd} --version printed no version: ${out.trim().split('\n')[0] ?? ''}`);
  return { version, minor: minorOf(version) };
}

/** One release's tools and its minor version (3.6). */
export interface EtcdRelease {
  minor: string;
  tools: EtcdTools;
}

/**
 * Every release a restore could run: one per folder v3.5/, v3.6/ of `binDir` (the image layout, the
 * folder naming the minor), or the one release whose etcd is in `binDir` (or PATH), its minor read
 * from `etcd --version`. Empty when there is no etcd that runs.
 */
export async function releasesIn(binDir?: string): Promise<EtcdRelease[]> {
  if (binDir && !executable(join(binDir, 'etcd'))) {
    return subfolders(binDir)
      .filter((n) => /^v\d+\.\d+$/.test(n))
      .map((n) => ({ minor: n.slice(1), tools: toolsIn(join(binDir, n)) }));
  }
  const tools = etcdTools(binDir);
  try {
    const { version, minor } = await etcdVersion(tools);
    return [{ minor, tools: { ...tools, version } }];
  } catch {
    return [];
  }
}

/** The same tools with `version` read from their etcd. */
export async function withVersion(tools: EtcdTools): Promise<EtcdTools> {
  return { ...tools, version: (await etcdVersion(tools)).version };
}
