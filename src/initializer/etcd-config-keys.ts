// The top-level keys each etcd minor reads from its --config-file: the `json` tags of embed.Config
// and configJSON in etcd's server/embed/config.go (3.5.36, 3.6.17); 3.4's are 3.5's minus the keys
// 3.4.23's etcd refuses as flags, plus the three 3.5 removed. Kept as data because etcd reads the
// file leniently: a key it does not know is ignored without a word, so a template written for
// another minor would silently lose settings (TLS nested under *-transport-security is the
// exception: those two keys are in every list).

export type EtcdMinor = '3.4' | '3.5' | '3.6';

export const KNOWN_MINORS: readonly EtcdMinor[] = ['3.4', '3.5', '3.6'];

const V3_5: readonly string[] = [
  'advertise-client-urls',
  'auth-token',
  'auth-token-ttl',
  'auto-compaction-mode',
  'auto-compaction-retention',
  'backend-batch-interval',
  'backend-batch-limit',
  'backend-bbolt-freelist-type',
  'bcrypt-cost',
  'cipher-suites',
  'cors',
  'data-dir',
  'discovery',
  'discovery-proxy',
  'discovery-srv',
  'discovery-srv-name',
  'election-timeout',
  'enable-grpc-gateway',
  'enable-log-rotation',
  'enable-pprof',
  'enable-v2',
  'experimental-bootstrap-defrag-threshold-megabytes',
  'experimental-compact-hash-check-enabled',
  'experimental-compact-hash-check-time',
  'experimental-compaction-batch-limit',
  'experimental-compaction-sleep-interval',
  'experimental-corrupt-check-time',
  'experimental-distributed-tracing-address',
  'experimental-distributed-tracing-instance-id',
  'experimental-distributed-tracing-sampling-rate',
  'experimental-distributed-tracing-service-name',
  'experimental-downgrade-check-time',
  'experimental-enable-distributed-tracing',
  'experimental-enable-lease-checkpoint',
  'experimental-enable-lease-checkpoint-persist',
  'experimental-enable-v2v3',
  'experimental-initial-corrupt-check',
  'experimental-memory-mlock',
  'experimental-snapshot-catch-up-entries',
  'experimental-stop-grpc-service-on-defrag',
  'experimental-txn-mode-write-with-shared-buffer',
  'experimental-warning-apply-duration',
  'experimental-watch-progress-notify-interval',
  'force-new-cluster',
  'grpc-keepalive-interval',
  'grpc-keepalive-min-time',
  'grpc-keepalive-timeout',
  'heartbeat-interval',
  'host-whitelist',
  'initial-advertise-peer-urls',
  'initial-cluster',
  'initial-cluster-state',
  'initial-cluster-token',
  'initial-election-tick-advance',
  'listen-client-http-urls',
  'listen-client-urls',
  'listen-metrics-urls',
  'listen-peer-urls',
  'log-level',
  'log-outputs',
  'log-rotation-config-json',
  'logger',
  'max-concurrent-streams',
  'max-request-bytes',
  'max-snapshots',
  'max-txn-ops',
  'max-wals',
  'metrics',
  'name',
  'pre-vote',
  'quota-backend-bytes',
  'self-signed-cert-validity',
  'snapshot-count',
  'socket-options',
  'strict-reconfig-check',
  'tls-max-version',
  'tls-min-version',
  'unsafe-no-fsync',
  'v2-deprecation',
  'wal-dir',
];

/** 3.5's keys that 3.4 does not read. */
const ADDED_IN_3_5: readonly string[] = [
  'backend-bbolt-freelist-type',
  'enable-log-rotation',
  'experimental-bootstrap-defrag-threshold-megabytes',
  'experimental-compact-hash-check-enabled',
  'experimental-compact-hash-check-time',
  'experimental-compaction-sleep-interval',
  'experimental-distributed-tracing-address',
  'experimental-distributed-tracing-instance-id',
  'experimental-distributed-tracing-sampling-rate',
  'experimental-distributed-tracing-service-name',
  'experimental-downgrade-check-time',
  'experimental-enable-distributed-tracing',
  'experimental-memory-mlock',
  'experimental-snapshot-catch-up-entries',
  'experimental-stop-grpc-service-on-defrag',
  'experimental-txn-mode-write-with-shared-buffer',
  'listen-client-http-urls',
  'log-rotation-config-json',
  'self-signed-cert-validity',
  'socket-options',
  'tls-max-version',
  'tls-min-version',
  'v2-deprecation',
];

/** 3.4's keys that 3.5 dropped. */
const REMOVED_IN_3_5: readonly string[] = ['debug', 'experimental-backend-bbolt-freelist-type', 'log-package-levels'];

/** Gone in 3.6 with the v2 store. */
const REMOVED_IN_3_6: readonly string[] = ['enable-v2', 'experimental-enable-v2v3'];

/** New in 3.6: mostly the new names of 3.5's experimental-* settings, feature gates and --max-learners. */
const ADDED_IN_3_6: readonly string[] = [
  'bootstrap-defrag-threshold-megabytes',
  'compact-hash-check-time',
  'compaction-batch-limit',
  'compaction-sleep-interval',
  'corrupt-check-time',
  'discovery-config',
  'distributed-tracing-address',
  'distributed-tracing-instance-id',
  'distributed-tracing-sampling-rate',
  'distributed-tracing-service-name',
  'downgrade-check-time',
  'enable-distributed-tracing',
  'experimental-peer-skip-client-san-verification',
  'experimental-warning-unary-request-duration',
  'feature-gates',
  'grpc-additional-server-options',
  'log-format',
  'max-learners',
  'memory-mlock',
  'snapshot-catchup-entries',
  'warning-apply-duration',
  'warning-unary-request-duration',
  'watch-progress-notify-interval',
];

const V3_4 = [...V3_5.filter((k) => !ADDED_IN_3_5.includes(k)), ...REMOVED_IN_3_5];
const V3_6 = [...V3_5.filter((k) => !REMOVED_IN_3_6.includes(k)), ...ADDED_IN_3_6];

const TRANSPORT = ['client-transport-security', 'peer-transport-security'];

export const CONFIG_KEYS: Readonly<Record<EtcdMinor, ReadonlySet<string>>> = {
  '3.4': new Set([...V3_4, ...TRANSPORT]),
  '3.5': new Set([...V3_5, ...TRANSPORT]),
  '3.6': new Set([...V3_6, ...TRANSPORT]),
};

/** 3.6's new names of 3.5's `experimental-*` settings (3.6 still reads the old names, 3.7 will not). */
export const RENAMED_IN_3_6: Readonly<Record<string, string>> = {
  'experimental-bootstrap-defrag-threshold-megabytes': 'bootstrap-defrag-threshold-megabytes',
  'experimental-compact-hash-check-time': 'compact-hash-check-time',
  'experimental-compaction-batch-limit': 'compaction-batch-limit',
  'experimental-compaction-sleep-interval': 'compaction-sleep-interval',
  'experimental-corrupt-check-time': 'corrupt-check-time',
  'experimental-distributed-tracing-address': 'distributed-tracing-address',
  'experimental-distributed-tracing-instance-id': 'distributed-tracing-instance-id',
  'experimental-distributed-tracing-sampling-rate': 'distributed-tracing-sampling-rate',
  'experimental-distributed-tracing-service-name': 'distributed-tracing-service-name',
  'experimental-downgrade-check-time': 'downgrade-check-time',
  'experimental-enable-distributed-tracing': 'enable-distributed-tracing',
  'experimental-memory-mlock': 'memory-mlock',
  'experimental-snapshot-catch-up-entries': 'snapshot-catchup-entries',
  'experimental-warning-apply-duration': 'warning-apply-duration',
  'experimental-warning-unary-request-duration': 'warning-unary-request-duration',
  'experimental-watch-progress-notify-interval': 'watch-progress-notify-interval',
};

/** 3.5's `experimental-*` switches that 3.6 turns into `feature-gates` entries. */
export const FEATURE_GATE_IN_3_6: Readonly<Record<string, string>> = {
  'experimental-compact-hash-check-enabled': 'CompactHashCheck',
  'experimental-enable-lease-checkpoint': 'LeaseCheckpoint',
  'experimental-enable-lease-checkpoint-persist': 'LeaseCheckpointPersist',
  'experimental-initial-corrupt-check': 'InitialCorruptCheck',
  'experimental-stop-grpc-service-on-defrag': 'StopGRPCServiceOnDefrag',
  'experimental-txn-mode-write-with-shared-buffer': 'TxnModeWriteWithSharedBuffer',
};

/** Why a key is missing from a minor, where a plain "not accepted" would leave the operator guessing. */
export const WHY_MISSING: Readonly<Record<string, string>> = {
  'enable-v2': 'etcd 3.6 has no v2 store',
  'experimental-enable-v2v3': 'etcd 3.6 has no v2 store',
  'max-learners': 'etcd before 3.6 allows one learner, always',
  'feature-gates': 'etcd before 3.6 has no feature gates',
};

/** etcd flags that a config file takes only nested under client-transport-security / peer-transport-security. */
export const TLS_FLAGS: ReadonlySet<string> = new Set([
  'auto-tls',
  'cert-file',
  'key-file',
  'client-cert-auth',
  'client-cert-file',
  'client-key-file',
  'client-crl-file',
  'trusted-ca-file',
  'client-cert-allowed-hostname',
  'peer-auto-tls',
  'peer-cert-file',
  'peer-key-file',
  'peer-client-cert-auth',
  'peer-client-cert-file',
  'peer-client-key-file',
  'peer-crl-file',
  'peer-trusted-ca-file',
  'peer-cert-allowed-cn',
  'peer-cert-allowed-hostname',
  'peer-skip-client-san-verification',
  'experimental-peer-skip-client-san-verification',
]);
