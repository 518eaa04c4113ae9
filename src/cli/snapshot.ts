import type { Command } from 'commander';
import { load, localSidecarURL, secretsOrExit, withSettings } from './common.js';

/** `snapshot full|delta`: asks the running sidecar for a snapshot now. */
export function snapshotCommand(root: Command): void {
  const snapshot = root.command('snapshot').description("ask the running sidecar (at --listen) to take a snapshot now");
  for (const kind of ['full', 'delta'] as const) {
    withSettings(snapshot.command(kind).description(`take a ${kind} snapshot now; prints its metadata as JSON`)).action(async (_o, cmd: Command) => {
      const { config } = load(cmd, false);
      const url = `${localSidecarURL(config)}/snapshot/${kind}`;
      const token = secretsOrExit(config).apiToken;
      let res: Response;
      try {
        res = await fetch(url, { method: 'POST', ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
      } catch (err) {
        process.stderr.write(`etcd-backup-sidecar: no sidecar answers at ${url}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}\n`);
        process.exit(1);
      }
      const body = await res.text();
      if (!res.ok) {
        process.stderr.write(`etcd-backup-sidecar: ${url} answered ${res.status}: ${body}\n`);
        process.exit(1);
      }
      process.stdout.write(`${body}\n`);
    });
  }
}
