import { Option, type Command } from 'commander';
import { HeartbeatAges } from '../cluster/heartbeat-ages.js';
import { HeartbeatWriter } from '../cluster/heartbeat.js';
import { writeFileDurably } from '../durable-file.js';
import { createEtcdClient, etcdAccessFromConfig } from '../etcd/client.js';
import { Initializer } from '../initializer/initializer.js';
import { createLogger } from '../logger.js';
import { openStore } from '../snapstore/index.js';
import { fail, load, withSettings } from './common.js';

/** `initialize`: decides how this member starts and writes etcd's config, without `serve`. */
export function initializeCommand(root: Command): void {
  withSettings(root.command('initialize').description("decide how this member starts (as POST /initialize does) and write etcd's config file; exit 0 on success"))
    .addOption(new Option('--etcd-config-out <file>', "where to write etcd's config (default: standard output)"))
    .action(async (opts: { etcdConfigOut?: string }, cmd: Command) => {
      const { config } = load(cmd, true);
      const log = createLogger(config.logLevel, process.stderr);
      const store = await openStore(config);
      const etcd = await createEtcdClient(etcdAccessFromConfig(config), log.child({ part: 'etcd' }));
      // Without `serve` there is no role loop: the heartbeat says only that etcd is not up yet, and
      // carries the member's last recorded progress forward.
      const heartbeat = new HeartbeatWriter(store, () => ({ name: config.name, role: 'unknown', apiURL: '', etcdUp: false }), { periodMs: config.heartbeatPeriod, log });
      const initializer = new Initializer({ config, etcd, store, log: log.child({ part: 'initializer' }), heartbeat, ages: new HeartbeatAges() });
      const stop = (): void => initializer.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      heartbeat.start();
      try {
        const status = await initializer.start();
        if (status.state !== 'Successful') fail(`initialization failed: ${status.error ?? status.reason ?? 'unknown'}`, 1);
        const yaml = initializer.etcdConfig() ?? '';
        if (opts.etcdConfigOut) await writeFileDurably(opts.etcdConfigOut, yaml);
        else process.stdout.write(yaml);
        process.stderr.write(`etcd-backup-sidecar: ${status.decision}: ${status.reason}\n`);
      } finally {
        await heartbeat.stop();
        etcd.close();
        await store.close();
      }
    });
}
