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

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, redact: { paths: REDACTED_PATHS, censor: '<redacted>' }, base: { component: 'etcd-backup-sidecar' } };
  return destination ? pino(options, destination) : pino(options);
}
