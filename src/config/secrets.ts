import { readFileSync } from 'node:fs';
import { ConfigError } from './load.js';
import type { Config } from './options.js';
import { Type } from '@sinclair/typebox';
import { parseJson } from '../json.js';

/** The secret fields of a GCS service-account key file. */
const GcsKeySchema = Type.Object({ private_key: Type.Optional(Type.String()), private_key_id: Type.Optional(Type.String()) });

export const REDACTED = '<redacted>';

/**
 * Secrets shorter than this are not searched for in free text: a 2-character password would turn
 * every log line into confetti while hiding almost nothing. Structured redaction (config dumps,
 * pino paths) still hides them.
 */
const MIN_SECRET_LENGTH = 4;

/** The secrets this sidecar holds, read once at start, and the bearer token the API enforces. */
export interface Secrets {
  /** Undefined when no token is configured (then only loopback listening is allowed, or --insecure-api). */
  apiToken: string | undefined;
  /** Every secret value, for scrubbing text that leaves the process (logs, responses, rendered configs). */
  values: string[];
}

function readSecretFile(flag: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`--${flag}: cannot read "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  // Files written with `echo` or by Kubernetes from a Secret often end in a newline; the token is the line.
  const value = text.replace(/\r?\n$/, '');
  if (value.trim() === '') throw new ConfigError([`--${flag}: "${path}" is empty`]);
  return value;
}

/** Values of `key = value` lines of an AWS shared credentials file that are secret. */
function awsSecrets(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(aws_secret_access_key|aws_session_token)\s*=\s*(\S+)\s*$/i.exec(line);
    if (m) out.push(m[2] as string);
  }
  return out;
}

/** A SAS token, and its signature alone: a URL that carries the token may show only the `sig=` part. */
function sasSecrets(text: string): string[] {
  const token = text.trim().replace(/^\?/, '');
  const sig = new URLSearchParams(token).get('sig');
  return sig ? [token, sig, encodeURIComponent(sig)] : [token];
}

function optionalRead(path: string): string | undefined {
  if (path === '') return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // the store reports an unreadable credentials file itself, naming the flag
  }
}

/**
 * Reads every secret the configuration points at: the API token (a ConfigError when its file is
 * unreadable or empty), the etcd password, and the store credentials this process can see (the
 * S3 credentials file, SSE-C key, GCS key file, Azure key and SAS files, and the AWS_* and AZURE_*
 * environment).
 */
export function loadSecrets(config: Config, env: Record<string, string | undefined> = process.env): Secrets {
  const apiToken = config.apiTokenFile !== '' ? readSecretFile('api-token-file', config.apiTokenFile) : config.apiToken !== '' ? config.apiToken : undefined;
  const values: string[] = [];
  if (apiToken) values.push(apiToken);
  if (config.etcdPassword !== '') values.push(config.etcdPassword);
  const etcdPassword = optionalRead(config.etcdPasswordFile);
  // Trimmed exactly as etcdAccessFromConfig reads it: the value the client sends is the one to hide.
  if (etcdPassword) values.push(etcdPassword.trim());
  const awsFile = optionalRead(config.s3CredentialsFile);
  if (awsFile) values.push(...awsSecrets(awsFile));
  const sseKey = optionalRead(config.s3SseCKeyFile);
  if (sseKey) values.push(sseKey.trim());
  const gcsKey = optionalRead(config.gcsKeyFile);
  if (gcsKey) {
    // Not a key file: the GCS client will say so; nothing we could recognise to hide.
    const key = parseJson(GcsKeySchema, gcsKey);
    if (key.ok) for (const v of [key.value.private_key, key.value.private_key_id]) if (v !== undefined) values.push(v);
  }
  const azureKey = optionalRead(config.azureKeyFile);
  if (azureKey) values.push(azureKey.trim());
  const sas = optionalRead(config.azureSasFile) ?? env['AZURE_STORAGE_SAS_TOKEN'];
  if (sas) values.push(...sasSecrets(sas));
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'EBS_API_TOKEN', 'EBS_ETCD_PASSWORD', 'AZURE_STORAGE_KEY', 'AZURE_CLIENT_SECRET']) {
    const v = env[name];
    if (v) values.push(v);
  }
  return { apiToken, values: [...new Set(values.filter((v) => v.trim().length >= MIN_SECRET_LENGTH))] };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces secret values in text that leaves the process, and passwords in URLs
 * (`https://user:pass@host`). Each secret is also matched as it appears inside JSON (a PEM key's
 * newlines become `\n`), since logs and API bodies are JSON. Pure: the same input gives the same text.
 */
export function redactText(text: string, secrets: readonly string[]): string {
  return redactor(secrets)(text);
}

/**
 * A scrubber bound to one set of secrets, for the logger and the HTTP server: the pattern is built
 * once, since it runs on every log line and every response.
 */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s.length < MIN_SECRET_LENGTH) continue;
    forms.add(s);
    forms.add(JSON.stringify(s).slice(1, -1));
  }
  // Longest first, so a secret containing another is replaced whole.
  const sorted = [...forms].sort((a, b) => b.length - a.length);
  const secret = sorted.length > 0 ? new RegExp(sorted.map(escapeRegExp).join('|'), 'g') : undefined;
  return (text) => {
    const out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s/:@"']+):([^\s/@"']+)@/gi, `$1:${REDACTED}@`);
    return secret ? out.replace(secret, REDACTED) : out;
  };
}
