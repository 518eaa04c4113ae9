/**
 * What every command shares: the settings as flags (one per option in config/options.ts), loading
 * and checking them with a clean exit on a bad value, and how a command fails.
 */
import { Command, Option } from 'commander';
import { ConfigError, SPECS, camelCase, envName, loadConfig, loadSecrets, type Config, type OptionSpec } from '../config/index.js';

export const EXIT_CONFIG = 2;

function optionFor(spec: OptionSpec): Option {
  const arg = spec.kind === 'boolean' ? '[bool]' : '<value>';
  const extras = [spec.default !== undefined ? `default: ${spec.default}` : undefined, spec.required ? 'required' : undefined, `env ${envName(spec.flag)}`];
  const option = new Option(`--${spec.flag} ${arg}`, `${spec.description} (${extras.filter(Boolean).join('; ')})`);
  if (spec.choices) option.choices(spec.choices);
  return option;
}

/** The flags given on the command line, keyed by flag name, in the raw text the config parses. */
function givenFlags(cmd: Command): Record<string, string | undefined> {
  const opts = cmd.opts<Record<string, string | boolean | undefined>>();
  const flags: Record<string, string | undefined> = {};
  for (const spec of SPECS) {
    const v = opts[camelCase(spec.flag)];
    if (v !== undefined) flags[spec.flag] = v === true ? 'true' : String(v);
  }
  return flags;
}

export function withSettings(cmd: Command): Command {
  for (const spec of SPECS) cmd.addOption(optionFor(spec));
  return cmd;
}

/** Runs a step that checks settings; a bad setting ends the process with its message and exit code 2. */
function orExitOnConfigError<T>(step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT_CONFIG);
    throw err;
  }
}

/** The settings of a command: none required, a whole member's (`serve`), or a member's identity without client URLs (`restore`). */
export function load(cmd: Command, requires: boolean | 'member-identity'): ReturnType<typeof loadConfig> {
  const requireMember = requires !== false;
  return orExitOnConfigError(() => loadConfig({ flags: givenFlags(cmd), env: process.env, requireMember, requireClientUrls: requires === true }));
}

export function secretsOrExit(config: Parameters<typeof loadSecrets>[0]): ReturnType<typeof loadSecrets> {
  return orExitOnConfigError(() => loadSecrets(config));
}

/** The sidecar this host runs, as its own --listen says (a wildcard bind is reached on loopback). */
export function localSidecarURL(config: Config): string {
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const scheme = config.serverCert !== '' ? 'https' : 'http';
  return `${scheme}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${config.listen.port}`;
}

export function fail(message: string, code: number): never {
  process.stderr.write(`etcd-backup-sidecar: ${message}\n`);
  process.exit(code);
}

/** POSTs to the sidecar this host runs (its --listen) and prints the answer; exits 1 when it fails or refuses. */
export async function postToSidecar(config: Config, path: string): Promise<void> {
  const url = `${localSidecarURL(config)}${path}`;
  const token = secretsOrExit(config).apiToken;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  } catch (err) {
    fail(`no sidecar answers at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`, 1);
  }
  const body = await res.text();
  if (!res.ok) fail(`${url} answered ${res.status}: ${body}`, 1);
  process.stdout.write(`${body}\n`);
}
