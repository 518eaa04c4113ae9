/**
 * V8 flags the sidecar's node runs with, wherever it is launched: the image's ENTRYPOINT (checked
 * by test/project/dockerfile.test.ts), bin/etcd-backup-sidecar.js's shebang, and the tests' and
 * benches' sidecars. V8 sizes its heap when the process starts; `v8.setFlagsFromString` afterwards
 * does not resize the young generation, so these cannot be set from inside the CLI.
 *
 * --max-semi-space-size=2 (MiB; V8's default on 64-bit is 16, a young generation of up to 48 MiB):
 * the sidecar's garbage is short-lived (watch events, gRPC messages, snapshot chunks) and survives
 * no scavenge, so a small young generation holds the same live data in far less memory. Measured
 * beside a member taking 32 writers as fast as it can (bench/snapshot.ts, delta capture): peak RSS
 * 154-166 MiB with the default, 114-121 MiB with 2 MiB (4 MiB: 121 MiB). The extra scavenges cost
 * no measurable time on the full snapshot path.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
