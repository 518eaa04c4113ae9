import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths pino censors wherever they appear in a log record. Secrets reach logs through config dumps,
 * request headers and error objects; listing their names here is the one guard for all of them.
 */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  'etcdPassword',
  '*.etcdPassword',
  'token',
  '*.token',
  'apiToken',
  '*.apiToken',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'secretAccessKey',
  '*.secretAccessKey',
];

/**
 * `scrub` sees every finished log line: the paths above catch secrets by field name, this catches
 * them by value wherever they hide (an error message quoting a URL, a dumped object).
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream, scrub?: (line: string) => string): Logger {
  const options = {
    level,
    redact: { paths: REDACTED_PATHS, censor: '<redacted>' },
    base: { component: 'etcd-backup-sidecar' },
    ...(scrub ? { hooks: { streamWrite: scrub } } : {}),
  };
  return destination ? pino(options, destination) : pino(options);
}
