// Kills what a test file left running when the file's process dies without cleaning up (the
// runner's timeout, a crash, SIGKILL): etcd members, sidecars, store servers. Their parent's
// 'exit' handlers never run then, and an orphan would hold ports and CPU for the rest of the suite.
// Every second it notes the test process's descendants (pid and start time, so a reused pid is
// never hit); once that process is gone it SIGKILLs the last ones it saw and exits.
import { readdirSync, readFileSync } from 'node:fs';

const parent = Number(process.argv[2]);

/** pid -> [ppid, start time] of every process, from /proc/<pid>/stat (the command name may hold spaces). */
function processes() {
  const out = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(name), [Number(fields[1]), fields[19]]);
    } catch {
      // gone between the listing and the read
    }
  }
  return out;
}

function descendants(all, root) {
  const found = new Map();
  const queue = [root];
  while (queue.length > 0) {
    const p = queue.shift();
    for (const [pid, [ppid, start]] of all) {
      if (ppid === p && pid !== process.pid && !found.has(pid)) {
        found.set(pid, start);
        queue.push(pid);
      }
    }
  }
  return found;
}

let seen = new Map();
const timer = setInterval(() => {
  const all = processes();
  if (all.has(parent)) {
    seen = descendants(all, parent);
    return;
  }
  clearInterval(timer);
  for (const [pid, start] of seen)
    if (all.get(pid)?.[1] === start)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
  process.exit(0);
}, 1000);
