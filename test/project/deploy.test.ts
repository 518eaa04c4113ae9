import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { envName, SPECS } from '../../src/config/options.js';

// The deployment examples cannot be applied here (no cluster, no systemd as PID 1), so this checks
// what can be checked without one: every Kubernetes manifest against the Kubernetes OpenAPI schemas
// (kubernetes-models), and the references between the pieces, including that every flag and
// environment variable given to the sidecar exists and that the settings load.

const root = new URL('../../', import.meta.url);
const read = (p: string): string => readFileSync(new URL(p, root), 'utf8');

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are untyped YAML walked by path */
type Doc = any;

const K8S_DIR = 'deploy/kubernetes/';
const manifestFiles = readdirSync(new URL(K8S_DIR, root)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const docs: Array<{ file: string; doc: Doc }> = manifestFiles.flatMap((file) =>
  parseAllDocuments(read(`${K8S_DIR}${file}`)).map((d) => {
    assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return { file, doc: d.toJS() };
  }),
);
const ofKind = (kind: string): Doc[] => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const [sts] = ofKind('StatefulSet');
const pod = sts.spec.template.spec;
const allContainers: Doc[] = [...(pod.initContainers ?? []), ...pod.containers];
const container = (name: string): Doc => {
  const c = allContainers.find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c;
};

/** Only "file does not exist" problems are allowed: the paths are the pod's, not this machine's. */
function loadsExceptMissingFiles(flags: Record<string, string>, env: Record<string, string>, what: string): void {
  try {
    loadConfig({ flags, env, requireMember: true });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    const real = err.problems.filter((p) => !/file ".*" does not exist/.test(p));
    assert.deepEqual(real, [], `${what}: ${real.join('; ')}`);
  }
}

function isSubset(small: Record<string, string>, big: Record<string, string>): boolean {
  return Object.entries(small).every(([k, v]) => big[k] === v);
}

describe('deploy/kubernetes', () => {
  it('every manifest validates against the Kubernetes schemas', () => {
    const models: Record<string, new (d: Doc) => { validate(): void }> = { StatefulSet, Service, Secret, PodDisruptionBudget };
    assert.ok(docs.length >= 6, 'statefulset, 2 services, 2 secrets, pdb');
    for (const { file, doc } of docs) {
      const Model = models[doc.kind];
      assert.ok(Model, `${file}: no schema for kind ${doc.kind}`);
      assert.doesNotThrow(() => new Model(doc).validate(), `${file} ${doc.kind}/${doc.metadata?.name}`);
    }
  });

  it('the schema check is real: a broken manifest fails it', () => {
    const broken = structuredClone(sts);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'two thousand';
    assert.throws(() => new StatefulSet(broken).validate());
    const missing = structuredClone(sts);
    delete missing.spec.selector;
    assert.throws(() => new StatefulSet(missing).validate());
  });

  it('kustomization lists every manifest', () => {
    const k = parseAllDocuments(read(`${K8S_DIR}kustomization.yaml`))[0]?.toJS();
    assert.deepEqual([...k.resources].sort(), [...manifestFiles].sort());
  });

  it('Services, the PDB and the StatefulSet select the pods the template labels', () => {
    const labels = sts.spec.template.metadata.labels;
    assert.ok(isSubset(sts.spec.selector.matchLabels, labels));
    for (const svc of ofKind('Service')) assert.ok(isSubset(svc.spec.selector, labels), `Service ${svc.metadata.name}`);
    const [pdb] = ofKind('PodDisruptionBudget');
    assert.ok(isSubset(pdb.spec.selector.matchLabels, labels));
    assert.equal(pdb.spec.minAvailable, Math.floor(sts.spec.replicas / 2) + 1, 'the PDB keeps quorum');
    const headless = ofKind('Service').find((s) => s.metadata.name === sts.spec.serviceName);
    assert.ok(headless, 'serviceName names a Service');
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, true, 'members must resolve each other before they are ready');
  });

  it('named ports exist: Service targets and probes', () => {
    const ports = new Map<string, number>(allContainers.flatMap((c) => (c.ports ?? []).map((p: Doc) => [p.name, p.containerPort] as [string, number])));
    for (const svc of ofKind('Service')) for (const p of svc.spec.ports) assert.ok(ports.has(p.targetPort), `Service ${svc.metadata.name} targets ${p.targetPort}`);
    for (const c of allContainers) {
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const port = c[probe]?.httpGet?.port;
        if (port !== undefined)
          assert.ok(
            (c.ports ?? []).some((p: Doc) => p.name === port),
            `${c.name} ${probe} port ${port}`,
          );
      }
    }
  });

  it('volume mounts and Secret keys resolve', () => {
    const volumes = new Set([...pod.volumes.map((v: Doc) => v.name), ...sts.spec.volumeClaimTemplates.map((v: Doc) => v.metadata.name)]);
    for (const c of allContainers) for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts ${m.name}`);
    const secrets = new Map<string, Set<string>>(ofKind('Secret').map((s) => [s.metadata.name, new Set(Object.keys({ ...s.data, ...s.stringData }))]));
    for (const v of pod.volumes.filter((x: Doc) => x.secret)) {
      const keys = secrets.get(v.secret.secretName);
      assert.ok(keys, `volume ${v.name}: Secret ${v.secret.secretName}`);
      for (const item of v.secret.items ?? []) assert.ok(keys.has(item.key), `Secret ${v.secret.secretName} key ${item.key}`);
    }
  });

  it('the sidecar is a native sidecar running serve with flags and EBS_* variables that exist, and its settings load', () => {
    const sidecar = container('sidecar');
    assert.equal(sidecar.restartPolicy, 'Always', 'a native sidecar (initContainers + restartPolicy Always)');
    assert.ok(pod.initContainers.includes(sidecar), 'an init container: started, and its startupProbe passed, before etcd starts');
    assert.ok(sidecar.startupProbe, 'holds the etcd container back until the API answers');
    assert.equal(sidecar.livenessProbe.httpGet.path, '/healthz');
    assert.equal(sidecar.readinessProbe.httpGet.path, '/readyz');
    assert.equal(sidecar.args[0], 'serve');
    const known = new Set(SPECS.map((s) => s.flag));
    const podName = `${sts.metadata.name}-0`;
    const flags: Record<string, string> = {};
    for (const arg of sidecar.args.slice(1)) {
      const m = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
      assert.ok(m, `${arg}: write flags as --flag=value`);
      assert.ok(known.has(m[1] as string), `--${m[1]} is not a flag of serve`);
      flags[m[1] as string] = (m[2] as string).replace(/\$\(POD_NAME\)/g, podName);
    }
    const envNames = new Set(SPECS.map((s) => envName(s.flag)));
    const env: Record<string, string> = {};
    for (const e of sidecar.env) {
      if (!e.name.startsWith('EBS_')) continue;
      assert.ok(envNames.has(e.name), `${e.name} is not a setting`);
      env[e.name] = e.value;
    }
    loadsExceptMissingFiles(flags, env, 'sidecar settings');

    // Every member of --initial-cluster is a pod of this StatefulSet behind its headless Service.
    const members = (env['EBS_INITIAL_CLUSTER'] as string).split(',');
    assert.equal(members.length, sts.spec.replicas);
    members.forEach((m, i) => assert.equal(m, `${sts.metadata.name}-${i}=http://${sts.metadata.name}-${i}.${sts.spec.serviceName}:2380`));

    // The API's port: the container port, the listen setting and the Prometheus annotation agree.
    const apiPort = sidecar.ports.find((p: Doc) => p.name === 'sidecar-api').containerPort;
    assert.equal(env['EBS_LISTEN'], `0.0.0.0:${apiPort}`);
    const annotations = sts.spec.template.metadata.annotations;
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(annotations['prometheus.io/port'], String(apiPort));
    assert.equal(annotations['prometheus.io/path'], '/metrics');

    // Files the settings name live on mounted volumes.
    const mounted = (c: Doc, path: string): boolean => (c.volumeMounts ?? []).some((m: Doc) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
    for (const key of ['EBS_API_TOKEN_FILE', 'EBS_S3_CREDENTIALS_FILE', 'EBS_DATA_DIR', 'EBS_SPOOL_DIR']) assert.ok(mounted(sidecar, env[key] as string), `${key} ${env[key]} is not on a volume`);
    assert.ok(mounted(container('etcd'), env['EBS_DATA_DIR'] as string), 'etcd sees the data dir the sidecar prepares');
  });

  it('etcd runs under the launcher (run-etcd), which asks the sidecar and writes the config file etcd starts with', () => {
    const etcd = container('etcd');
    assert.equal(etcd.image, container('sidecar').image, 'the product image, which carries etcd');
    assert.equal(etcd.args[0], 'run-etcd');
    assert.ok(!pod.initContainers.some((c: Doc) => c.name === 'initialize'), 'no init container decides once per pod: the launcher decides at every etcd start');
    const known = new Set(SPECS.map((s) => s.flag));
    const flags: Record<string, string> = {};
    for (const arg of etcd.args.slice(1)) {
      const m = /^--([a-z0-9-]+)=(.*)$/.exec(arg);
      assert.ok(m, `${arg}: write flags as --flag=value`);
      assert.ok(known.has(m[1] as string), `--${m[1]} is not a setting`);
      flags[m[1] as string] = m[2] as string;
    }
    const apiPort = container('sidecar').ports.find((p: Doc) => p.name === 'sidecar-api').containerPort;
    assert.equal(flags['listen'], `127.0.0.1:${apiPort}`, 'reaches the sidecar of its own pod');
    const mounted = (c: Doc, path: string): Doc | undefined => (c.volumeMounts ?? []).find((m: Doc) => path.startsWith(`${m.mountPath}/`));
    assert.ok(mounted(etcd, flags['api-token-file'] as string), 'the token file is mounted');
    const configMount = mounted(etcd, flags['etcd-config-file'] as string);
    assert.ok(configMount && !configMount.readOnly, 'the config file is written where etcd reads it');
    assert.ok(pod.volumes.find((v: Doc) => v.name === configMount.name).emptyDir, 'an emptyDir');
  });
});

describe('deploy/kubernetes/maintenance', () => {
  const file = `${K8S_DIR}maintenance/data-dir-pod.yaml`;
  const pods = parseAllDocuments(read(file)).map((d) => d.toJS());

  it("the maintenance pod validates, mounts member 0's data volume where the sidecar has it, and sets only real settings", () => {
    assert.equal(pods.length, 1);
    const p = pods[0];
    assert.equal(p.kind, 'Pod');
    assert.doesNotThrow(() => new Pod(p).validate(), file);
    // Never selected by the etcd Services: it serves nothing.
    for (const svc of ofKind('Service')) assert.ok(!isSubset(svc.spec.selector, p.metadata.labels ?? {}), `Service ${svc.metadata.name} selects the maintenance pod`);
    const claim = p.spec.volumes.find((v: Doc) => v.persistentVolumeClaim)?.persistentVolumeClaim.claimName;
    assert.equal(claim, `${sts.spec.volumeClaimTemplates[0].metadata.name}-${sts.metadata.name}-0`, 'the PVC of the first member');
    const [c] = p.spec.containers;
    const dataMount = c.volumeMounts.find((m: Doc) => p.spec.volumes.find((v: Doc) => v.name === m.name)?.persistentVolumeClaim);
    assert.equal(dataMount.mountPath, container('sidecar').volumeMounts.find((m: Doc) => m.name === 'data').mountPath);
    const volumes = new Set(p.spec.volumes.map((v: Doc) => v.name));
    for (const m of c.volumeMounts) assert.ok(volumes.has(m.name), `mounts ${m.name}`);
    const envNames = new Set(SPECS.map((s) => envName(s.flag)));
    const sidecarEnv = new Map<string, string>(
      container('sidecar')
        .env.filter((e: Doc) => e.value !== undefined)
        .map((e: Doc) => [e.name, e.value]),
    );
    for (const e of c.env) {
      assert.ok(envNames.has(e.name), `${e.name} is not a setting`);
      assert.equal(e.value, sidecarEnv.get(e.name), `${e.name} differs from the sidecar's`);
    }
  });
});

function unit(file: string): Map<string, string[]> {
  const entries = new Map<string, string[]>();
  let section = '';
  for (const line of read(file).split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(t);
    if (s) {
      section = s[1] as string;
      continue;
    }
    const eq = t.indexOf('=');
    assert.ok(eq > 0, `${file}: "${t}"`);
    const key = `${section}.${t.slice(0, eq)}`;
    entries.set(key, [...(entries.get(key) ?? []), t.slice(eq + 1)]);
  }
  return entries;
}

describe('deploy/systemd', () => {
  const sidecar = unit('deploy/systemd/etcd-backup-sidecar.service');
  const etcd = unit('deploy/systemd/etcd.service');

  it('etcd starts after the sidecar and requires it', () => {
    assert.match(etcd.get('Unit.Requires')?.join(' ') ?? '', /etcd-backup-sidecar\.service/);
    assert.match(etcd.get('Unit.After')?.join(' ') ?? '', /etcd-backup-sidecar\.service/);
    for (const u of [sidecar, etcd]) for (const k of ['Service.ExecStart', 'Install.WantedBy']) assert.ok(u.get(k), k);
  });

  it('the sidecar runs serve with its config file, whose keys are settings and load', () => {
    const exec = sidecar.get('Service.ExecStart')?.[0] as string;
    const m = /^\/usr\/bin\/etcd-backup-sidecar serve --config (\S+)$/.exec(exec);
    assert.ok(m, exec);
    const example = read('deploy/systemd/config.example.yaml');
    const doc = parseAllDocuments(example)[0]?.toJS() as Record<string, unknown>;
    const known = new Map(SPECS.map((s) => [s.flag, s]));
    for (const key of Object.keys(doc)) assert.ok(known.has(key) && !known.get(key)?.notInFile, `config key ${key}`);
    const file = join(mkdtempSync(join(tmpdir(), 'ebs-deploy-')), 'config.yaml');
    writeFileSync(file, example);
    loadsExceptMissingFiles({ config: file }, {}, 'config.example.yaml');
  });

  it("etcd runs under run-etcd with the sidecar's own config file, which initializes through the API and writes the config etcd starts with", () => {
    assert.equal(etcd.get('Service.ExecStartPre'), undefined, "initialization is the launcher's: at every start of etcd, and again when a recovery needs this member");
    const exec = etcd.get('Service.ExecStart')?.[0] as string;
    const m = /^\/usr\/bin\/etcd-backup-sidecar run-etcd --config (\S+) --etcd-config-file=(\S+)$/.exec(exec);
    assert.ok(m, exec);
    const sidecarConfig = /--config (\S+)$/.exec(sidecar.get('Service.ExecStart')?.[0] as string)?.[1];
    assert.equal(m[1], sidecarConfig, 'the same settings: it reaches the sidecar at its --listen with its token');
    assert.ok((m[2] as string).startsWith(`/run/${etcd.get('Service.RuntimeDirectory')?.[0]}/`), "written to the unit's runtime dir");
    assert.equal(etcd.get('Service.KillMode')?.[0], 'mixed', 'SIGTERM to the launcher alone, which stops etcd');
  });
});
