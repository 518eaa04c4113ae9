import cron from 'node-cron';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { camelCase, envName, SPECS, type Config, type HostPort, type OptionSpec, type PeerEntry } from './options.js';
import { parseDuration, parseSize } from './units.js';
import { containerNameProblem } from '../snapstore/azblob-names.js';

/** Where a raw value came from, so an error can tell the operator which line to fix. */
export type Source = 'default' | 'file' | 'env' | 'flag';

interface RawValue {
  text: string;
  source: Source;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? `invalid configuration: ${problems[0]}` : `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  config: Config;
  /** Settings that are legal but likely wrong (for example a keepalive etcd 3.4 will punish). */
  warnings: string[];
}

export interface ConfigInput {
  /** Values given on the command line, keyed by flag name. */
  flags: Record<string, string | undefined>;
  env: Record<string, string | undefined>;
  /** Enforce the settings `serve` needs. */
  requireMember: boolean;
  /**
   * A member's identity without its client side: what `restore` needs, exactly etcdutl's flags
   * (name, data dir, initial cluster, its token and peer URLs). Default: what requireMember says.
   */
  requireClientUrls?: boolean;
}

/** Settings a member needs only where it serves clients; a restore writes a data dir and serves nobody. */
const CLIENT_SIDE = new Set(['advertise-client-urls']);

const BY_FLAG = new Map<string, OptionSpec>(SPECS.map((o) => [o.flag, o]));

function label(spec: OptionSpec, raw: RawValue): string {
  switch (raw.source) {
    case 'flag':
      return `--${spec.flag}`;
    case 'env':
      return `${envName(spec.flag)} (environment)`;
    case 'file':
      return `${spec.flag} (config file)`;
    case 'default':
      return `--${spec.flag} (default)`;
  }
}

/** Reads the YAML file named by --config / EBS_CONFIG into flag-name -> text. */
function readConfigFile(path: string, problems: string[]): Map<string, string> {
  const values = new Map<string, string>();
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    problems.push(`config file ${path}: ${(err as Error).message.split('\n')[0]}`);
    return values;
  }
  if (doc === null || doc === undefined) return values;
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`config file ${path}: expected a mapping of flag names to values`);
    return values;
  }
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const spec = BY_FLAG.get(key);
    if (!spec || spec.notInFile) {
      problems.push(`config file ${path}: unknown key "${key}"`);
      continue;
    }
    if (Array.isArray(value)) values.set(key, value.map(String).join(','));
    else if (value !== null && typeof value === 'object') problems.push(`config file ${path}: "${key}" must be a scalar or a list`);
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') values.set(key, String(value));
  }
  return values;
}

function parseUrlList(text: string): string[] | string {
  const urls = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (urls.length === 0) return 'expected at least one URL';
  for (const u of urls) {
    const problem = checkHttpUrl(u);
    if (problem) return problem;
  }
  return urls;
}

/** Member URLs need their port; an endpoint URL may leave https's default out. */
function checkHttpUrl(u: string, needsPort = true): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(u)) return `"${u}" has no scheme (write http://${u} or https://${u})`;
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return `"${u}" is not a URL (expected e.g. http://10.0.0.1:2379)`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${u}" must start with http:// or https://`;
  if (needsPort && url.port === '') return `"${u}" has no port`;
  return undefined;
}

function parseInitialCluster(text: string): PeerEntry[] | string {
  const entries: PeerEntry[] = [];
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return `"${part}" is not name=peer-url`;
    const name = part.slice(0, eq);
    const peerURL = part.slice(eq + 1);
    const problem = checkHttpUrl(peerURL);
    if (problem) return `${name}: ${problem}`;
    entries.push({ name, peerURL });
  }
  if (entries.length === 0) return 'expected at least one name=peer-url';
  return entries;
}

function parseStoreUrl(text: string): string | { error: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { error: `"${text}" is not a URL (expected file:///path, s3://bucket/prefix, gs://bucket/prefix or azblob://container/prefix)` };
  }
  switch (url.protocol) {
    case 'file:':
      return text;
    case 's3:':
    case 'gs:':
      if (url.hostname === '') return { error: `"${text}" names no bucket` };
      return text;
    case 'azblob:': {
      if (url.hostname === '') return { error: `"${text}" names no container` };
      const problem = containerNameProblem(url.hostname);
      return problem ? { error: `"${text}": container ${problem}` } : text;
    }
    default:
      return { error: `"${text}" has unsupported scheme ${url.protocol.replace(/:$/, '')} (use file, s3, gs or azblob)` };
  }
}

function parseHostPort(text: string): HostPort | string {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(text.trim());
  if (!m) return `"${text}" is not host:port`;
  const port = Number(m[2]);
  if (port < 0 || port > 65535) return `"${text}" has port out of range`;
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

const BOOLEANS: Record<string, boolean> = { true: true, '1': true, yes: true, on: true, false: false, '0': false, no: false, off: false };

/** Parses one raw value by its option's kind; a string result is the problem. */
function parseValue(spec: OptionSpec, text: string): { value: unknown } | { problem: string } {
  switch (spec.kind) {
    case 'string':
    case 'secret':
    case 'path':
      return { value: text };
    case 'duration': {
      const ms = parseDuration(text);
      return ms === undefined ? { problem: `"${text}" is not a duration (use e.g. 500ms, 10s, 5m, 1h)` } : { value: ms };
    }
    case 'size': {
      const bytes = parseSize(text);
      return bytes === undefined ? { problem: `"${text}" is not a size (use e.g. 512KiB, 32MiB, 1GB)` } : { value: bytes };
    }
    case 'boolean': {
      const b = BOOLEANS[text.trim().toLowerCase()];
      return b === undefined ? { problem: `"${text}" is not a boolean (use true or false)` } : { value: b };
    }
    case 'url': {
      const problem = checkHttpUrl(text.trim(), false);
      return problem ? { problem } : { value: text.trim() };
    }
    case 'urls': {
      const r = parseUrlList(text);
      return typeof r === 'string' ? { problem: r } : { value: r };
    }
    case 'initialCluster': {
      const r = parseInitialCluster(text);
      return typeof r === 'string' ? { problem: r } : { value: r };
    }
    case 'store': {
      const r = parseStoreUrl(text);
      return typeof r === 'string' ? { value: r } : { problem: r.error };
    }
    case 'hostPort': {
      const r = parseHostPort(text);
      return typeof r === 'string' ? { problem: r } : { value: r };
    }
    case 'integer':
      return /^\d+$/.test(text.trim()) ? { value: Number(text.trim()) } : { problem: `"${text}" is not a whole number` };
    case 'enum':
      return spec.choices?.includes(text) ? { value: text } : { problem: `"${text}" is not one of ${spec.choices?.join(', ')}` };
    case 'cron': {
      if (text.trim() === 'off') return { value: 'off' };
      const check = cron.validateDetailed(text.trim());
      return check.valid ? { value: text.trim() } : { problem: `"${text}" is not a cron schedule (${check.errors.map((e) => e.message).join('; ') || 'expected e.g. "0 */1 * * *"'})` };
    }
  }
}

/**
 * Builds the configuration from defaults < YAML file < environment < flags, then checks the
 * settings against each other. Throws one ConfigError listing every problem, each naming the
 * setting, where it came from and the offending value.
 */
export function loadConfig(input: ConfigInput): LoadedConfig {
  const problems: string[] = [];
  const raw = new Map<string, RawValue>();

  for (const spec of SPECS) {
    if (spec.default !== undefined) raw.set(spec.flag, { text: spec.default, source: 'default' });
  }
  const configPath = input.flags['config'] ?? input.env[envName('config')];
  if (configPath !== undefined && configPath !== '') {
    if (!existsSync(configPath)) problems.push(`--config: file "${configPath}" does not exist`);
    else for (const [flag, text] of readConfigFile(configPath, problems)) raw.set(flag, { text, source: 'file' });
  }
  for (const spec of SPECS) {
    const fromEnv = input.env[envName(spec.flag)];
    if (fromEnv !== undefined && fromEnv !== '') raw.set(spec.flag, { text: fromEnv, source: 'env' });
  }
  for (const [flag, text] of Object.entries(input.flags)) {
    if (text === undefined) continue;
    if (!BY_FLAG.has(flag)) problems.push(`unknown flag --${flag}`);
    else raw.set(flag, { text, source: 'flag' });
  }

  const values: Record<string, unknown> = {};
  for (const spec of SPECS) {
    const r = raw.get(spec.flag);
    if (r === undefined) {
      values[camelCase(spec.flag)] = emptyValue(spec);
      continue;
    }
    const parsed = parseValue(spec, r.text);
    if ('problem' in parsed) {
      // Secrets are never echoed back, not even in an error.
      const problem = spec.kind === 'secret' ? 'invalid value' : parsed.problem;
      problems.push(`${label(spec, r)}: ${problem}`);
      continue;
    }
    if (spec.mustExist && typeof parsed.value === 'string' && parsed.value !== '' && !existsSync(parsed.value)) {
      problems.push(`${label(spec, r)}: file "${parsed.value}" does not exist`);
    }
    values[camelCase(spec.flag)] = parsed.value;
  }

  const config = values as Config;
  if (input.requireMember) {
    for (const spec of SPECS) {
      if (!spec.required || (input.requireClientUrls === false && CLIENT_SIDE.has(spec.flag))) continue;
      const v = values[camelCase(spec.flag)];
      if (v === '' || (Array.isArray(v) && v.length === 0)) {
        problems.push(`--${spec.flag} is required (flag, ${envName(spec.flag)} or "${spec.flag}" in the config file)`);
      }
    }
  }
  if (problems.length === 0) deriveAndCrossCheck(config, input.requireMember, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { config, warnings: warningsFor(config) };
}

function emptyValue(spec: OptionSpec): unknown {
  switch (spec.kind) {
    case 'urls':
    case 'initialCluster':
      return [];
    case 'boolean':
      return false;
    case 'duration':
    case 'size':
    case 'integer':
      return 0;
    default:
      return '';
  }
}

function deriveAndCrossCheck(config: Config, requireMember: boolean, problems: string[]): void {
  if (requireMember) {
    const own = config.initialCluster.filter((e) => e.name === config.name).map((e) => e.peerURL);
    if (own.length === 0) {
      problems.push(`--initial-cluster: member "${config.name}" (from --name) is not listed in "${config.initialCluster.map((e) => `${e.name}=${e.peerURL}`).join(',')}"`);
    } else if (config.initialAdvertisePeerUrls.length === 0) {
      config.initialAdvertisePeerUrls = own;
    } else {
      const foreign = config.initialAdvertisePeerUrls.filter((u) => !own.includes(u));
      if (foreign.length > 0) problems.push(`--initial-advertise-peer-urls: ${foreign.join(',')} is not listed for "${config.name}" in --initial-cluster`);
    }
  }
  if (config.endpoints.length === 0) config.endpoints = [...config.advertiseClientUrls];
  if (config.listenClientUrls.length === 0) config.listenClientUrls = [...config.advertiseClientUrls];
  if (config.listenPeerUrls.length === 0) config.listenPeerUrls = [...config.initialAdvertisePeerUrls];
  if (config.restoreLeader === '') config.restoreLeader = config.initialCluster[0]?.name ?? '';
  else if (requireMember && !config.initialCluster.some((e) => e.name === config.restoreLeader)) problems.push(`--restore-leader: "${config.restoreLeader}" is not a member of --initial-cluster`);
  const schemes = new Set(config.endpoints.map((u) => new URL(u).protocol));
  if (schemes.size > 1) problems.push(`--endpoints: mixes http and https (${config.endpoints.join(',')})`);
  if (config.etcdPassword !== '' && config.etcdPasswordFile !== '') problems.push('--etcd-password and --etcd-password-file are both set; keep one');
  if ((config.etcdPassword !== '' || config.etcdPasswordFile !== '') && config.etcdUsername === '') problems.push('--etcd-username is required with a password');
  if ((config.etcdCert === '') !== (config.etcdKey === '')) problems.push('--etcd-cert and --etcd-key go together; set both or neither');
  if (config.storeMaxAttempts < 1) problems.push('--store-max-attempts: must be at least 1');
  if (config.storeUploadConcurrency < 1) problems.push('--store-upload-concurrency: must be at least 1');
  if (config.restoreReplayWindow < 1) problems.push('--restore-replay-window: must be at least 1');
  const stores = [config.store, config.secondaryStore];
  if (stores.some((u) => u.startsWith('s3:')) && config.storePartSize < 5 * 2 ** 20) problems.push(`--store-part-size: S3 parts must be at least 5MiB`);
  if (config.secondaryStore !== '' && config.secondaryStore.replace(/\/+$/, '') === config.store.replace(/\/+$/, ''))
    problems.push(`--secondary-store: ${config.secondaryStore} is --store itself; name another bucket or folder`);
  if (config.gcsChunkSize % (256 * 1024) !== 0) problems.push(`--gcs-chunk-size: ${config.gcsChunkSize} bytes is not a multiple of 256KiB`);
  if (config.s3SseKmsKeyId !== '' && config.s3Sse !== 'aws:kms') problems.push('--s3-sse-kms-key-id needs --s3-sse=aws:kms');
  if (config.azureKeyFile !== '' && config.azureSasFile !== '') problems.push('--azure-key-file and --azure-sas-file are both set; keep one');
  if (stores.some((u) => u.startsWith('azblob:')) && config.storePartSize > 4000 * 2 ** 20) problems.push(`--store-part-size: Azure blocks are at most 4000MiB`);
  if (config.s3SseCKeyFile !== '' && config.s3Sse !== 'none') problems.push('--s3-sse-c-key-file (SSE-C) and --s3-sse cannot be combined');
  if (config.compressionLevel < 1 || config.compressionLevel > 9) problems.push(`--compression-level: ${config.compressionLevel} is not between 1 and 9`);
  if (config.maxBackups < 1) problems.push('--max-backups: must be at least 1 (the latest full snapshot is always kept)');
  if (config.deltaSnapshotPeriod > 0 && config.deltaSnapshotMemoryLimit < 64 * 1024) problems.push(`--delta-snapshot-memory-limit: ${config.deltaSnapshotMemoryLimit} bytes is below 64KiB`);
  if (config.dialKeepAliveTime > 0 && config.dialKeepAliveTimeout === 0) problems.push('--dial-keep-alive-timeout: must be above 0 while --dial-keep-alive-time is set');
  if (config.fullSnapshotSchedule === 'off') problems.push('--full-snapshot-schedule: cannot be off (full snapshots are what deltas build on)');
  if (config.defragThreshold > 100) problems.push(`--defrag-threshold: ${config.defragThreshold}% is above 100`);
  if (config.leaderCheckPeriod < 100) problems.push(`--leader-check-period: ${config.leaderCheckPeriod} ms is below 100ms`);
  if (config.leaderLostAfter < 1) problems.push('--leader-lost-after: must be at least 1');
  if (config.maxLearners < 1) problems.push('--max-learners: must be at least 1 (a member joins as a learner)');
  if (config.etcdVersion !== '' && !/^3\.\d+$/.test(config.etcdVersion)) problems.push(`--etcd-version: ${config.etcdVersion} is not an etcd minor version such as 3.6`);
  if (config.heartbeatPeriod < 100) problems.push(`--heartbeat-period: ${config.heartbeatPeriod} ms is below 100ms`);
  if (config.heartbeatTtl === 0) config.heartbeatTtl = 3 * config.heartbeatPeriod;
  else if (config.heartbeatTtl < config.heartbeatPeriod)
    problems.push(`--heartbeat-ttl: ${config.heartbeatTtl} ms is shorter than --heartbeat-period (${config.heartbeatPeriod} ms): every heartbeat would look stale`);
  checkApiSecurity(config, requireMember, problems);
}

/** Whether an address only this machine can reach (the pod's containers share it). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

function checkApiSecurity(config: Config, requireMember: boolean, problems: string[]): void {
  if (config.apiToken !== '' && config.apiTokenFile !== '') problems.push('--api-token and --api-token-file are both set; keep one');
  if ((config.serverCert === '') !== (config.serverKey === '')) problems.push('--server-cert and --server-key go together; set both or neither');
  if (config.serverClientCa !== '' && config.serverCert === '') problems.push('--server-client-ca (mutual TLS) needs --server-cert and --server-key');
  // Only `serve` (and `config`, which shows what serve would run) opens the port; clients of the API
  // load the same settings to find it and must not be refused.
  const tokenless = config.apiToken === '' && config.apiTokenFile === '';
  if (requireMember && tokenless && !config.insecureApi && !isLoopbackHost(config.listen.host)) {
    problems.push(
      `--listen ${config.listen.host}:${config.listen.port} is reachable beyond this machine, so mutating requests need a token: set --api-token-file (or EBS_API_TOKEN), or --insecure-api=true to accept anyone`,
    );
  }
}

function warningsFor(config: Config): string[] {
  const warnings: string[] = [];
  if (config.dialKeepAliveTime > 0 && config.dialKeepAliveTime < 5_000) {
    warnings.push('--dial-keep-alive-time below 5s: etcd servers with the default --grpc-keepalive-min-time=5s will close the connection with GOAWAY too_many_pings');
  }
  if (config.permitWithoutStream && config.dialKeepAliveTime > 0) {
    warnings.push('--permit-without-stream=true: etcd 3.4 servers answer pings on idle connections with GOAWAY too_many_pings after about 3 pings');
  }
  return warnings;
}
