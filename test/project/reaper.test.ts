import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { eventually } from '../helpers/cluster.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('a test process killed by the runner takes what it started with it (the reaper)', { timeout: 60_000 }, async () => {
  const reaper = join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'reaper.ts');
  // A stand-in test file: loads the reaper like the helpers do, starts a long-lived process and a
  // grandchild, prints their pids, then waits to be killed.
  const script = `import(${JSON.stringify(reaper)}).then(() => {
    const { spawn } = require('node:child_process');
    const a = spawn('sleep', ['300'], { stdio: 'ignore' });
    const b = spawn('sh', ['-c', 'sleep 300 & wait'], { stdio: 'ignore' });
    setTimeout(() => console.log(JSON.stringify([a.pid, b.pid])), 1500);
  });`;
  const file = spawn(process.execPath, ['--import', 'tsx', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(file.stdout, 'data')) as [Buffer];
  const [a, b] = JSON.parse(line.toString()) as [number, number];
  const grandchild = Number(readFileSync(`/proc/${b}/task/${b}/children`, 'utf8').trim());
  const pids = [a, b, grandchild];
  assert.ok(pids.every(alive), 'started');
  file.kill('SIGKILL');
  await eventually('orphans killed', async () => (pids.some(alive) ? undefined : true), 15_000);
});
