// Every setting of the sidecar, declared once. The CLI flags, the `EBS_*` environment names, the YAML
// keys, `--help`, the typed `Config` and the docs are all derived from this table, so they cannot
// drift apart. Member settings keep etcd's own flag names so an operator can copy them from etcd's
// command line.

export interface PeerEntry {
  name: string;
  peerURL: string;
}

export interface HostPort {
  host: string;
  port: number;
}

/** What each kind of option parses into. */
export interface KindTypes {
  string: string;
  secret: string;
  path: string;
  duration: number; // milliseconds
  size: number; // bytes
  boolean: boolean;
  integer: number;
  url: string;
  urls: string[];
  initialCluster: PeerEntry[];
  store: string;
  hostPort: HostPort;
  enum: string;
  cron: string;
}

export type OptionKind = keyof KindTypes;

export interface OptionSpec {
  /** etcd-style flag name without the leading dashes; also the YAML key. */
  readonly flag: string;
  readonly kind: OptionKind;
  /** Default as the operator would write it; absent means "none" or "derived" (see description). */
  readonly default?: string;
  readonly description: string;
  readonly group: 'member' | 'etcd client' | 'store' | 'snapshot' | 'server' | 'general';
  /** Required by `serve`. */
  readonly required?: boolean;
  readonly choices?: readonly string[];
  /** A path that must exist when set (certificates, password files). */
  readonly mustExist?: boolean;
  /** Only from the command line or environment (the YAML file cannot name itself). */
  readonly notInFile?: boolean;
}

export const OPTIONS = [
  // --- member settings (etcd's own names) ---
  { flag: 'name', kind: 'string', group: 'member', required: true, description: "this etcd member's name, as in etcd's --name" },
  { flag: 'data-dir', kind: 'path', group: 'member', required: true, description: "this etcd member's data dir, as in etcd's --data-dir" },
  {
    flag: 'initial-cluster',
    kind: 'initialCluster',
    group: 'member',
    required: true,
    description: "every member as name=peer-url, comma-separated, as in etcd's --initial-cluster",
  },
  { flag: 'initial-cluster-token', kind: 'string', group: 'member', default: 'etcd-cluster', description: "as in etcd's --initial-cluster-token" },
  {
    flag: 'initial-advertise-peer-urls',
    kind: 'urls',
    group: 'member',
    description: "this member's peer URLs (default: its entries in --initial-cluster)",
  },
  { flag: 'advertise-client-urls', kind: 'urls', group: 'member', required: true, description: "this member's client URLs, as in etcd's --advertise-client-urls" },
  {
    flag: 'endpoints',
    kind: 'urls',
    group: 'member',
    description: 'client URLs of all members, comma-separated (default: --advertise-client-urls)',
  },

  // --- etcd client ---
  {
    flag: 'etcd-call-timeout',
    kind: 'duration',
    group: 'etcd client',
    default: '2s',
    description: 'deadline of each attempt of a unary etcd call; a frozen member costs about this much, then the call moves to another member (0 disables)',
  },
  {
    flag: 'dial-keep-alive-time',
    kind: 'duration',
    group: 'etcd client',
    default: '10s',
    description: 'gRPC keepalive ping interval; etcd 3.4 answers pings more frequent than 5s with GOAWAY too_many_pings (0 disables)',
  },
  {
    flag: 'dial-keep-alive-timeout',
    kind: 'duration',
    group: 'etcd client',
    default: '5s',
    description: 'a connection whose ping is not acknowledged within this is closed and redialed',
  },
  {
    flag: 'permit-without-stream',
    kind: 'boolean',
    group: 'etcd client',
    default: 'false',
    description: 'send keepalive pings on connections with no active call; etcd 3.4 rejects those with GOAWAY too_many_pings',
  },
  {
    flag: 'auto-sync-interval',
    kind: 'duration',
    group: 'etcd client',
    default: '30s',
    description: 'how often the endpoint rotation is refreshed from the member list; learners and unstarted members are left out (0 disables)',
  },
  {
    flag: 'health-check-period',
    kind: 'duration',
    group: 'etcd client',
    default: '10s',
    description: "how often every member's status is probed for the health metrics",
  },
  { flag: 'etcd-username', kind: 'string', group: 'etcd client', description: 'etcd user for password authentication' },
  { flag: 'etcd-password', kind: 'secret', group: 'etcd client', description: 'password of --etcd-username (prefer --etcd-password-file or EBS_ETCD_PASSWORD)' },
  { flag: 'etcd-password-file', kind: 'path', group: 'etcd client', mustExist: true, description: 'file holding the password of --etcd-username' },
  { flag: 'etcd-cacert', kind: 'path', group: 'etcd client', mustExist: true, description: 'CA bundle that signed the etcd server certificates' },
  { flag: 'etcd-cert', kind: 'path', group: 'etcd client', mustExist: true, description: 'client certificate for etcd (TLS client auth)' },
  { flag: 'etcd-key', kind: 'path', group: 'etcd client', mustExist: true, description: 'private key of --etcd-cert' },

  // --- object store ---
  {
    flag: 'store',
    kind: 'store',
    group: 'store',
    default: 'file://./backups',
    description: 'where backups live: file:///path, s3://bucket/prefix, gs://bucket/prefix or azblob://container/prefix',
  },
  {
    flag: 'secondary-store',
    kind: 'store',
    group: 'store',
    description:
      'a second store the backup leader keeps in step with --store (another region or cloud): it copies what the second one lacks after every upload and every --secondary-store-period, checking each object on both sides, and applies --gc-policy there; deletions in --store are never copied. Store settings (credentials, endpoint) are shared, so the two stores use different providers or the same credentials. A second store that is down never delays a backup',
  },
  { flag: 'secondary-store-period', kind: 'duration', group: 'store', default: '1m', description: 'how often the backup leader catches the --secondary-store up besides after each upload' },
  { flag: 'store-timeout', kind: 'duration', group: 'store', default: '30s', description: 'a store request fails when connecting, or waiting for the next bytes, takes longer than this' },
  { flag: 'store-max-attempts', kind: 'integer', group: 'store', default: '5', description: 'attempts of a store request on transient errors (5xx, throttling, resets), with backoff' },
  {
    flag: 'store-part-size',
    kind: 'size',
    group: 'store',
    default: '5MiB',
    description:
      'S3 multipart part size (at least 5MiB; an object has at most 10,000 parts, so 5MiB allows 48GiB) and Azure block size (at most 50,000 blocks: 5MiB allows 244GiB); upload memory grows with this x --store-upload-concurrency',
  },
  { flag: 'store-upload-concurrency', kind: 'integer', group: 'store', default: '4', description: 'parts (S3) or blocks (Azure) uploaded in parallel' },
  {
    flag: 'store-retention',
    kind: 'duration',
    group: 'store',
    default: '0',
    description:
      'lock every snapshot uploaded for this long (S3 Object Lock, GCS per-object retention, Azure version-level immutability; the local store records it and refuses deletes before it): retention skips snapshots still locked and deletes them once the lock ends; needs a bucket created with Object Lock (S3), per-object retention (GCS) or version-level immutability (Azure); 0 disables',
  },
  {
    flag: 'azure-immutability-mode',
    kind: 'enum',
    group: 'store',
    default: 'Unlocked',
    choices: ['Unlocked', 'Locked'],
    description:
      'mode of the version-level immutability policy Azure uploads get when --store-retention is set: Unlocked (an administrator may shorten or remove it) or Locked (nobody can); the container needs version-level immutability',
  },
  {
    flag: 'gcs-retention-mode',
    kind: 'enum',
    group: 'store',
    default: 'Unlocked',
    choices: ['Unlocked', 'Locked'],
    description:
      'per-object retention mode of GCS uploads when --store-retention is set: Unlocked (an account with storage.objects.overrideUnlockedRetention may shorten or remove it) or Locked (nobody can)',
  },
  {
    flag: 's3-object-lock-mode',
    kind: 'enum',
    group: 'store',
    default: 'bucket-default',
    choices: ['bucket-default', 'GOVERNANCE', 'COMPLIANCE'],
    description:
      "Object Lock mode of the uploads when --store-retention is set: GOVERNANCE (users with s3:BypassGovernanceRetention may lift it) or COMPLIANCE (nobody can, not even the root account); bucket-default: the bucket's default retention mode, else GOVERNANCE",
  },
  { flag: 's3-endpoint', kind: 'url', group: 'store', description: 'URL of an S3-compatible store (MinIO, Ceph); default: AWS' },
  { flag: 's3-force-path-style', kind: 'boolean', group: 'store', default: 'false', description: 'address buckets as endpoint/bucket instead of bucket.endpoint (most S3-compatible stores)' },
  { flag: 's3-region', kind: 'string', group: 'store', description: 'S3 region (default: AWS_REGION, else us-east-1)' },
  { flag: 's3-sse', kind: 'enum', group: 'store', default: 'none', choices: ['none', 'AES256', 'aws:kms'], description: 'server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS)' },
  { flag: 's3-sse-kms-key-id', kind: 'string', group: 'store', description: "KMS key for --s3-sse=aws:kms (default: the bucket's key)" },
  { flag: 's3-sse-c-key-file', kind: 'path', group: 'store', mustExist: true, description: 'file holding a 256-bit key (32 raw bytes or base64) for SSE-C' },
  { flag: 's3-credentials-file', kind: 'path', group: 'store', mustExist: true, description: "AWS shared credentials file (default: the SDK's chain: env, profile, IRSA, instance role)" },
  { flag: 's3-profile', kind: 'string', group: 'store', default: 'default', description: 'profile in --s3-credentials-file' },
  { flag: 'gcs-endpoint', kind: 'url', group: 'store', description: 'URL of a GCS-compatible JSON API (default: Google)' },
  {
    flag: 'gcs-chunk-size',
    kind: 'size',
    group: 'store',
    default: '0',
    description: 'GCS resumable upload chunk size (a multiple of 256KiB); 0 streams each object in one request: less memory, but a failed upload is retried whole, by the caller',
  },
  { flag: 'gcs-key-file', kind: 'path', group: 'store', mustExist: true, description: 'service account key file (default: Application Default Credentials)' },
  {
    flag: 'azure-endpoint',
    kind: 'url',
    group: 'store',
    description: 'blob service URL for Azurite (http://127.0.0.1:10000/devstoreaccount1) or a sovereign cloud; default: https://<account>.blob.core.windows.net',
  },
  { flag: 'azure-account', kind: 'string', group: 'store', description: 'Azure storage account (default: AZURE_STORAGE_ACCOUNT)' },
  { flag: 'azure-key-file', kind: 'path', group: 'store', mustExist: true, description: 'file holding the storage account key (default: AZURE_STORAGE_KEY)' },
  {
    flag: 'azure-sas-file',
    kind: 'path',
    group: 'store',
    mustExist: true,
    description: 'file holding a SAS token (default: AZURE_STORAGE_SAS_TOKEN); with neither a SAS nor a key, DefaultAzureCredential (workload identity, managed identity, Azure CLI)',
  },

  // --- snapshots ---
  {
    flag: 'snapshot-leader',
    kind: 'enum',
    group: 'snapshot',
    default: 'elect',
    choices: ['elect', 'always', 'never'],
    description: 'whether this sidecar takes snapshots: elect (the sidecar beside the etcd raft leader does), always (unconditionally; one sidecar per cluster) or never',
  },
  {
    flag: 'full-snapshot-schedule',
    kind: 'cron',
    group: 'snapshot',
    default: '0 */1 * * *',
    description: "cron schedule of full snapshots (5 fields, or 6 with seconds first); one is also taken at start when the latest is older than the schedule's period",
  },
  {
    flag: 'restore-time-objective',
    kind: 'duration',
    group: 'snapshot',
    default: '60s',
    description:
      "the backup leader also takes a full snapshot as soon as a restore of the chain since the last one is estimated to take longer than this (the fixed part for the full snapshot plus its deltas' revisions at the replay rate measured by this member's restores and drills, 1,000/s until one is); /status shows the estimate; 0 disables",
  },
  {
    flag: 'full-snapshot-min-interval',
    kind: 'duration',
    group: 'snapshot',
    default: '1m',
    description:
      '--restore-time-objective takes a full snapshot at most this soon after the last one (of any cause), so a chain that outgrows the objective faster does not keep etcd streaming snapshots',
  },
  { flag: 'delta-snapshot-period', kind: 'duration', group: 'snapshot', default: '5s', description: 'events are uploaded as one delta snapshot this often; 0 disables delta snapshots' },
  {
    flag: 'delta-snapshot-memory-limit',
    kind: 'size',
    group: 'snapshot',
    default: '32MiB',
    description: 'a delta is uploaded early when its events reach this size; collection pauses while one such delta waits for the previous upload',
  },
  { flag: 'compression', kind: 'enum', group: 'snapshot', default: 'gzip', choices: ['gzip', 'zlib', 'lzw', 'none'], description: 'compression of snapshot objects (suffix .gz, .zlib, .Z or none)' },
  { flag: 'compression-level', kind: 'integer', group: 'snapshot', default: '1', description: 'gzip/zlib level, 1 (fastest, the default: see README, Snapshots) to 9 (smallest)' },
  {
    flag: 'gc-policy',
    kind: 'enum',
    group: 'snapshot',
    default: 'exponential',
    choices: ['exponential', 'limit'],
    description: 'retention: exponential keeps every full snapshot of the last hour, then one per hour for 24h, per day for 7 days, per week for 4 weeks; limit keeps --max-backups',
  },
  { flag: 'max-backups', kind: 'integer', group: 'snapshot', default: '7', description: 'full snapshots kept by --gc-policy=limit (with the deltas after each)' },
  { flag: 'gc-period', kind: 'duration', group: 'snapshot', default: '1m', description: 'how often retention runs; 0 disables it' },
  {
    flag: 'spool-dir',
    kind: 'path',
    group: 'snapshot',
    description: 'where a full snapshot is spooled before its upload to S3 or GCS (its name holds its last revision, known only at its end); default: the system temp dir',
  },
  {
    flag: 'restore-scratch-dir',
    kind: 'path',
    group: 'snapshot',
    description:
      'where a restore runs its temporary etcd to replay deltas (it needs room for the db; that etcd skips fsync where its release allows, so a tmpfs such as /dev/shm mostly keeps it off the data disk); default: beside --data-dir',
  },
  {
    flag: 'etcd-bin-dir',
    kind: 'path',
    group: 'snapshot',
    description:
      "folder of the etcd, etcdctl and etcdutl a restore runs (its temporary etcd, and etcdutl snapshot restore; etcdctl's on 3.4, which has no etcdutl); one release's tools side by side, e.g. /usr/local/etcd-v3.6, or a folder of one such folder per minor version (v3.5/, v3.6/; the image's /usr/local/lib/etcd): a restore (CLI, initializer, drill, compact) takes the release the backups were taken from, else --etcd-version's, else the newest, and refuses when the backups' release is missing; default: the folder of the etcd in PATH",
  },
  {
    flag: 'restore-prefetch',
    kind: 'integer',
    group: 'snapshot',
    default: '4',
    description: 'deltas a restore reads ahead of the one it replays (at most; --restore-prefetch-bytes bounds their memory)',
  },
  {
    flag: 'restore-prefetch-bytes',
    kind: 'size',
    group: 'snapshot',
    default: '32MiB',
    description:
      'stored (compressed) bytes the deltas a restore reads ahead may hold, the one it replays included; deltas are decoded event by event as they are replayed, and one larger than this streams from the store',
  },
  {
    flag: 'restore-replay-window',
    kind: 'integer',
    group: 'snapshot',
    default: '64',
    description: 'replay transactions a restore keeps in flight to its temporary etcd, each guarded so it applies only right after its predecessor; 1 replays one revision at a time',
  },
  {
    flag: 'restore-lease-ttl',
    kind: 'duration',
    group: 'snapshot',
    default: '1h',
    description: 'TTL a restore gives to leases that keys in the deltas use but the full snapshot lacks (their real TTL is in no backup)',
  },

  // --- defragmentation, run by the backup leader's sidecar ---
  {
    flag: 'defrag-schedule',
    kind: 'cron',
    group: 'snapshot',
    default: '0 3 */3 * *',
    description: 'cron schedule of defragmentation rounds (followers one at a time, the raft leader last, only while every member is healthy and the quorum survives one busy member); off disables',
  },
  {
    flag: 'defrag-threshold',
    kind: 'integer',
    group: 'snapshot',
    default: '10',
    description: "percent of a member's db that must be free (dbSize - dbSizeInUse) for a round to defragment it; 0 defragments every member",
  },
  {
    flag: 'auto-recover-nospace',
    kind: 'boolean',
    group: 'snapshot',
    default: 'false',
    description:
      'when a member raises NOSPACE, the backup leader compacts the history to the current revision minus --nospace-retained-revisions, defragments every member and disarms the alarm (etcd never does; writes are refused until then)',
  },
  { flag: 'nospace-retained-revisions', kind: 'integer', group: 'snapshot', default: '1000', description: 'revisions of history a NOSPACE recovery keeps below the current revision when it compacts' },
  {
    flag: 'defrag-timeout',
    kind: 'duration',
    group: 'snapshot',
    default: '5m',
    description: "deadline of one member's defragmentation; the member must also answer healthy again within it before the round goes on",
  },

  // --- backup-leader election and member heartbeats ---
  {
    flag: 'leader-check-period',
    kind: 'duration',
    group: 'snapshot',
    default: '2s',
    description: 'how often the sidecar asks its own member whether it is the raft leader with quorum; each check must answer within this period',
  },
  {
    flag: 'leader-lost-after',
    kind: 'integer',
    group: 'snapshot',
    default: '3',
    description: 'checks in a row without a confirmed answer after which the sidecar steps down to role unknown and stops snapshotting',
  },
  { flag: 'heartbeat-period', kind: 'duration', group: 'snapshot', default: '10s', description: 'how often the sidecar writes its heartbeat (members/<name>.json, outside v2/) to the store' },
  { flag: 'heartbeat-ttl', kind: 'duration', group: 'snapshot', description: 'a heartbeat older than this is stale: its sidecar is taken as gone (default: 3 x --heartbeat-period)' },
  {
    flag: 'advertise-api-url',
    kind: 'url',
    group: 'server',
    description: "this sidecar's API URL as other sidecars reach it, in its heartbeat (default: --listen, with the host of --advertise-client-urls when --listen binds every interface)",
  },

  // --- initializer ---
  { flag: 'listen-client-urls', kind: 'urls', group: 'member', description: "URLs etcd listens on for clients, as in etcd's --listen-client-urls (default: --advertise-client-urls)" },
  { flag: 'listen-peer-urls', kind: 'urls', group: 'member', description: "URLs etcd listens on for peers, as in etcd's --listen-peer-urls (default: --initial-advertise-peer-urls)" },
  {
    flag: 'restore-leader',
    kind: 'string',
    group: 'member',
    description:
      'the member preferred to recover a multi-member cluster from the backups after quorum loss, when it takes part (default: the first member of --initial-cluster); when it is gone for --heartbeat-ttl another member takes the recovery',
  },
  {
    flag: 'etcd-config-template',
    kind: 'path',
    group: 'member',
    mustExist: true,
    description: "etcd config file (YAML) whose settings GET /config keeps (TLS, quotas, tuning); the member's identity and cluster settings are the initializer's",
  },
  {
    flag: 'etcd-config-file',
    kind: 'path',
    group: 'member',
    description: "where the sidecar also writes etcd's config once initialized (what GET /config serves), e.g. a volume shared with the etcd container",
  },
  {
    flag: 'max-learners',
    kind: 'integer',
    group: 'member',
    default: '1',
    description:
      "learners the cluster may hold at once, as in etcd 3.6's --max-learners (GET /config passes it to etcd 3.6; 3.4 and 3.5 allow one): a member that would be one more waits instead of being added",
  },
  {
    flag: 'etcd-version',
    kind: 'string',
    group: 'member',
    description:
      'the etcd minor version (3.4, 3.5, 3.6) the cluster runs: GET /config renders for it (template keys it does not read are renamed to its names or dropped, with a note), and restores use its tools when the backups record no etcd version; default: the version of the etcd in --etcd-bin-dir or PATH',
  },
  { flag: 'initialize-retry-period', kind: 'duration', group: 'member', default: '2s', description: 'how often a waiting initializer gathers the facts again' },

  // --- HTTP server ---
  { flag: 'listen', kind: 'hostPort', group: 'server', default: '127.0.0.1:8080', description: 'address of the HTTP API' },
  { flag: 'server-body-limit', kind: 'size', group: 'server', default: '1MiB', description: 'largest request body the API accepts' },
  {
    flag: 'api-token-file',
    kind: 'path',
    group: 'server',
    mustExist: true,
    description: 'file holding the bearer token every mutating (POST) request must send as "Authorization: Bearer <token>"; required when --listen is not loopback',
  },
  { flag: 'api-token', kind: 'secret', group: 'server', description: 'the bearer token itself (prefer --api-token-file or EBS_API_TOKEN: a flag shows in ps)' },
  {
    flag: 'insecure-api',
    kind: 'boolean',
    group: 'server',
    default: 'false',
    description: 'allow listening beyond loopback without --api-token-file: anyone who reaches the port can trigger snapshots and initialization',
  },
  { flag: 'server-cert', kind: 'path', group: 'server', mustExist: true, description: 'serve the API over HTTPS with this certificate (PEM, chain allowed); needs --server-key' },
  { flag: 'server-key', kind: 'path', group: 'server', mustExist: true, description: 'private key of --server-cert (PEM)' },
  {
    flag: 'server-client-ca',
    kind: 'path',
    group: 'server',
    mustExist: true,
    description: 'require API clients to present a certificate signed by this CA (mutual TLS); kubelet probes send none, so use exec probes with it',
  },
  {
    flag: 'server-request-timeout',
    kind: 'duration',
    group: 'server',
    default: '30s',
    description:
      'a request (headers and body) must arrive within this, or it gets 408 and its connection is closed: a client trickling bytes cannot hold connections open (the answer may take longer, e.g. POST /initialize?wait=...)',
  },

  // --- general ---
  { flag: 'config', kind: 'path', group: 'general', mustExist: true, notInFile: true, description: 'YAML file with any of these settings, keyed by flag name' },
  {
    flag: 'log-level',
    kind: 'enum',
    group: 'general',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    description: 'log level',
  },
] as const satisfies readonly OptionSpec[];

type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

export type OptionFlag = (typeof OPTIONS)[number]['flag'];

/** The typed configuration: one property per option, camelCased, in its parsed type. */
export type Config = {
  [O in (typeof OPTIONS)[number] as CamelCase<O['flag']>]: KindTypes[O['kind']];
};

export function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function envName(flag: string): string {
  return `EBS_${flag.replace(/-/g, '_').toUpperCase()}`;
}

/** The table seen as plain specs, for code that walks every option. */
export const SPECS: readonly OptionSpec[] = OPTIONS;

/** The configuration as it may be shown (logs, /status): secrets replaced, nothing else changed. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const shown: Record<string, unknown> = { ...config };
  for (const spec of SPECS) {
    const key = camelCase(spec.flag);
    if (spec.kind === 'secret' && shown[key] !== '') shown[key] = '<redacted>';
  }
  return shown;
}
