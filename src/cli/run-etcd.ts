import { Option, type Command } from 'commander';
import { etcdTools } from '../etcd/tools.js';
import { runEtcd } from '../launcher/run-etcd.js';
import { createLogger } from '../logger.js';
import { fail, load, localSidecarURL, secretsOrExit, withSettings } from './common.js';

/** `run-etcd`: the etcd container's command. */
export function runEtcdCommand(root: Command): void {
  withSettings(
    root
      .command('run-etcd')
      .description(
        "run etcd as the sidecar at --listen decides: POST /initialize, start etcd with GET /config written to --etcd-config-file, stop and start it again when the sidecar asks (a recovery needs this member's data); the etcd container's command",
      ),
  )
    .addOption(new Option('--poll <ms>', 'how often the sidecar is asked whether etcd must stop').default('2000'))
    .action(async (opts: { poll: string }, cmd: Command) => {
      const { config } = load(cmd, false);
      const log = createLogger(config.logLevel, process.stderr).child({ part: 'run-etcd' });
      if (!config.etcdConfigFile) fail('run-etcd needs --etcd-config-file: where etcd reads its config', 2);
      const { apiToken } = secretsOrExit(config);
      const abort = new AbortController();
      // etcd gets SIGTERM from the launcher, never from the container runtime directly.
      process.once('SIGTERM', () => abort.abort());
      process.once('SIGINT', () => abort.abort());
      const code = await runEtcd({
        sidecarURL: localSidecarURL(config),
        ...(apiToken ? { token: apiToken } : {}),
        configFile: config.etcdConfigFile,
        etcdBinary: etcdTools(config.etcdBinDir || undefined).etcd,
        pollMs: Number(opts.poll),
        stopGraceMs: 30_000,
        log,
        signal: abort.signal,
      }).catch((err: Error) => (abort.signal.aborted ? 0 : fail(err.message, 1)));
      process.exit(code);
    });
}
