import type { Command } from 'commander';
import { redactor } from '../config/index.js';
import { createLogger } from '../logger.js';
import { startSidecar } from '../sidecar.js';
import { load, secretsOrExit, withSettings } from './common.js';

/** `serve`: the sidecar itself, until SIGTERM. */
export function serveCommand(root: Command): void {
  withSettings(root.command('serve').description('run the sidecar: HTTP API, member health, backups')).action(async (_o, cmd: Command) => {
    const { config, warnings } = load(cmd, true);
    const secrets = secretsOrExit(config);
    const log = createLogger(config.logLevel, undefined, redactor(secrets.values));
    for (const w of warnings) log.warn(w);
    let sidecar: Awaited<ReturnType<typeof startSidecar>>;
    try {
      sidecar = await startSidecar(config, log);
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'cannot start');
      process.exit(1);
    }
    const shutdown = (signal: string): void => {
      log.info({ signal }, 'stopping');
      sidecar.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
