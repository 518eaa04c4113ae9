// Child process for the keepalive test: builds the sidecar's etcd client from flags, optionally
// holds a watch open, stays idle, then makes one call. Run with GRPC_TRACE so the parent can read
// every ping and GOAWAY from stderr.
import { loadConfig } from '../../src/config/index.js';
import { createEtcdClient, etcdAccessFromConfig } from '../../src/etcd/client.js';
import { createLogger } from '../../src/logger.js';

const { endpoint, flags, idleMs, watch } = JSON.parse(process.argv[2] as string) as { endpoint: string; flags: Record<string, string>; idleMs: number; watch: boolean };
const { config } = loadConfig({
  flags: { name: 'probe', 'data-dir': '/tmp/unused', 'initial-cluster': 'probe=http://127.0.0.1:1', 'advertise-client-urls': endpoint, ...flags },
  env: {},
  requireMember: true,
});
const client = await createEtcdClient(etcdAccessFromConfig(config), createLogger('silent'));
await client.etcd.put('keepalive-probe').value('1');
const watcher = watch ? await client.etcd.watch().key('keepalive-probe-watch').create() : undefined;
await new Promise((resolve) => setTimeout(resolve, idleMs));
const value = await client.etcd.get('keepalive-probe').string();
await watcher?.cancel();
client.close();
process.stdout.write(`done ${value}\n`);
process.exit(0);
