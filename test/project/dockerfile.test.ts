import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { envName, SPECS } from '../../src/config/options.js';
import { minorDir } from '../../src/etcd/tools.js';
import { SIDECAR_NODE_FLAGS } from '../../src/launcher/node-flags.js';

// No Docker engine here, so the image cannot be built in tests. This checks what the Dockerfile
// states: stages, the runtime user, the etcd tools restores need, the entry point, and that every
// file it copies exists and is let through .dockerignore.

const root = new URL('../../', import.meta.url);
const read = (p: string): string => readFileSync(new URL(p, root), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

interface Stage {
  from: string;
  name: string | undefined;
  steps: Instruction[];
}

/** Instructions per stage, with line continuations joined and comments dropped. */
function parseDockerfile(text: string): Stage[] {
  // Docker drops comment lines first, even inside a continued instruction, then joins continuations.
  const uncommented = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');
  const lines = uncommented
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `not an instruction: ${line}`);
    const [op, args] = [m[1] as string, (m[2] as string).replace(/\s+/g, ' ')];
    if (op === 'FROM') {
      const f = /^(\S+)(?: AS (\S+))?$/i.exec(args);
      stages.push({ from: f?.[1] as string, name: f?.[2], steps: [] });
    } else {
      assert.ok(stages.length > 0, `${op} before FROM`);
      stages[stages.length - 1]?.steps.push({ op, args });
    }
  }
  return stages;
}

const stages = parseDockerfile(read('Dockerfile'));
const runtime = stages[stages.length - 1] as Stage;
const build = stages.find((s) => s.name === 'build') as Stage;
const steps = (s: Stage, op: string): string[] => s.steps.filter((x) => x.op === op).map((x) => x.args);

describe('Dockerfile', () => {
  it('builds in a separate stage and runs on the same Node major', () => {
    assert.ok(build, 'a stage named build');
    assert.notEqual(runtime, build);
    assert.equal(build.from, runtime.from, 'native modules built for the image they run in');
    assert.match(runtime.from, /^node:20-/);
    assert.ok(
      steps(build, 'RUN').some((r) => r.includes('npm ci')),
      'reproducible install from the lock file',
    );
    assert.ok(
      steps(build, 'RUN').some((r) => r.includes('npm run build') && r.includes('npm prune --omit=dev')),
      'dev dependencies pruned before copying',
    );
  });

  it('runs as a numeric non-root user', () => {
    const users = steps(runtime, 'USER');
    assert.equal(users.length, 1);
    const [uid, gid] = (users[0] as string).split(':');
    assert.match(uid as string, /^\d+$/, 'numeric, so runAsNonRoot can verify it');
    assert.notEqual(Number(uid), 0);
    if (gid !== undefined) assert.notEqual(Number(gid), 0);
    const userIndex = runtime.steps.findIndex((s) => s.op === 'USER');
    assert.ok(
      runtime.steps.slice(userIndex + 1).every((s) => s.op !== 'RUN'),
      'no RUN after USER: the image is complete before root is dropped',
    );
  });

  it('ships the etcd 3.5 and 3.6 tools side by side, one folder per minor, built by scripts/peers.sh', () => {
    const etcd = stages.find((s) => s.name === 'etcd') as Stage;
    assert.ok(etcd, 'a stage named etcd builds the tools');
    // The wrapper modules peers.sh writes name a Go version; the stage's Go must be that one (GOTOOLCHAIN=local).
    const peers = read('scripts/peers.sh');
    const goVersion = /^go (\d+\.\d+)/m.exec(peers)?.[1];
    assert.equal(etcd.from, `golang:${goVersion}-bookworm`);
    assert.ok(steps(etcd, 'COPY').includes('scripts/peers.sh ./scripts/peers.sh'));
    const build = steps(etcd, 'RUN').join('\n');
    assert.match(build, /PEERS_SKIP_ETCDBR=1 PEERS_SKIP_FAKE_GCS=1 bash scripts\/peers\.sh/, 'only the etcd tools');
    const run = steps(runtime, 'RUN').join('\n');
    for (const minor of ['3.5', '3.6']) {
      // peers.sh writes each line to .peers/etcd-v<minor>; the image keeps it as v<minor>, the name etcdTools() picks.
      assert.match(peers, new RegExp(`ETCD_${minor.replace('.', '')}="\\$\\{PEERS_ETCD_${minor.replace('.', '')}:-v${minor.replace('.', '\\.')}\\.\\d+\\}"`));
      assert.ok(steps(runtime, 'COPY').includes(`--from=etcd /src/.peers/etcd-v${minor} /usr/local/lib/etcd/v${minor}`), `etcd ${minor} copied`);
      assert.equal(minorDir(['v3.5', 'v3.6'], minor), `v${minor}`);
      assert.match(run, new RegExp(`/usr/local/lib/etcd/v${minor}/etcd --version`), `etcd ${minor} checked`);
      assert.match(run, new RegExp(`/usr/local/lib/etcd/v${minor}/etcdutl version`), `etcdutl ${minor} checked (restores use it)`);
    }
    assert.ok(steps(runtime, 'ENV').includes(`${envName('etcd-bin-dir')}=/usr/local/lib/etcd`), 'the sidecar looks in the folder of folders');
    assert.match(run, /ln -s "\/usr\/local\/lib\/etcd\/v3\.6\/\$tool" "\/usr\/local\/bin\/\$tool"/, 'the newest in PATH');
    assert.doesNotMatch(run, /apt-get install[^\n]*etcd/, "no Debian etcd (3.4) beside them: PATH's etcd is 3.6");
  });

  it('the entry point is the compiled CLI that the build produces from src/cli.ts', () => {
    const entry = JSON.parse(steps(runtime, 'ENTRYPOINT')[0] as string) as string[];
    assert.deepEqual(entry, ['node', ...SIDECAR_NODE_FLAGS, '/app/dist/cli.js']);
    const shebang = read('bin/etcd-backup-sidecar.js').split('\n')[0];
    assert.equal(shebang, `#!/usr/bin/env -S node ${SIDECAR_NODE_FLAGS.join(' ')}`, 'bin/ runs node with the same flags');
    const workdir = steps(runtime, 'WORKDIR').at(-1);
    assert.equal(workdir, '/app');
    const tsBuild = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { rootDir: string; outDir: string } };
    assert.equal(tsBuild.compilerOptions.rootDir, 'src');
    assert.equal(tsBuild.compilerOptions.outDir, 'dist');
    assert.ok(existsSync(new URL('src/cli.ts', root)), 'src/cli.ts compiles to dist/cli.js');
    assert.ok(steps(runtime, 'COPY').includes('--from=build /src/dist ./dist'));
    assert.deepEqual(JSON.parse(steps(runtime, 'CMD')[0] as string), ['serve']);
  });

  it('every file copied from the context exists and passes .dockerignore', () => {
    const allowed = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1));
    for (const stage of stages) {
      for (const copy of steps(stage, 'COPY')) {
        if (copy.startsWith('--from=')) {
          const from = /^--from=(\S+) (\S+)/.exec(copy);
          assert.ok(
            stages.some((s) => s.name === from?.[1]),
            `COPY ${copy}: no stage ${from?.[1]}`,
          );
          assert.ok(from?.[2]?.startsWith('/src/'), `${copy}: copied from the build stage's workdir`);
          continue;
        }
        const parts = copy.split(' ').filter((p) => !p.startsWith('--'));
        for (const src of parts.slice(0, -1)) {
          assert.ok(existsSync(new URL(src, root)), `COPY ${src}: missing`);
          assert.ok(allowed.includes(src), `COPY ${src}: excluded by .dockerignore`);
        }
      }
    }
  });

  it('exposes the default API port', () => {
    const listen = SPECS.find((s) => s.flag === 'listen')?.default as string;
    assert.deepEqual(steps(runtime, 'EXPOSE'), [listen.split(':')[1]]);
  });
});
