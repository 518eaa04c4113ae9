/**
 * Imported by every helper that starts a process: starts, once per test file, a watcher that kills
 * what the file left running if the file's process dies without cleaning up (reaper-watch.mjs).
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const watcher = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'reaper-watch.mjs'), String(process.pid)], { detached: true, stdio: 'ignore' });
watcher.unref();
