import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The built CLI (`dist/cli.js`, as `npm test` builds it) run to its end, with the test process's
 * environment less its EBS_ settings (a test says what the command gets); a failure is a result, not a throw.
 */
export async function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EBS_')));
  return promisify(execFile)(process.execPath, ['dist/cli.js', ...args], { env: { ...clean, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: CliRun) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The flags of a CLI `restore` of one member `r1` (peer URL `peer`) into `dataDir` from `store`. */
export function restoreMemberFlags(dataDir: string, peer: string, store: string): string[] {
  return ['--name', 'r1', '--data-dir', dataDir, '--initial-cluster', `r1=${peer}`, '--advertise-client-urls', 'http://127.0.0.1:2379', '--store', store, '--log-level', 'warn'];
}

/** The result a CLI `restore` prints as its last line. */
export function restoreResultOf(run: CliRun): unknown {
  return JSON.parse(run.stdout.trim().split('\n').at(-1) as string);
}
