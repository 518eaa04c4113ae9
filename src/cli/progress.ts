import type { RestoreProgress } from '../restore/index.js';

/** A one-line progress bar on a terminal's stderr; nothing when stderr is not a terminal (logs carry the progress). */
export function progressBar(): { update: (p: RestoreProgress) => void; done: () => void } {
  // Undefined (falsy) when stderr is a pipe or a file, whatever the type says.
  const tty = process.stderr.isTTY;
  let shown = false;
  let last = 0;
  return {
    update: (p) => {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && p.phase === 'replaying') return;
      last = now;
      const span = Math.max(1, p.targetRevision - p.fullRevision);
      const frac = p.phase === 'done' ? 1 : p.phase === 'replaying' || p.phase === 'finalizing' ? Math.min(1, (p.revision - p.fullRevision) / span) : 0;
      const width = 30;
      const filled = Math.round(frac * width);
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${p.phase} revision ${p.revision}/${p.targetRevision} deltas ${p.deltasApplied}/${p.deltasTotal}   `,
      );
      shown = true;
    },
    done: () => {
      if (shown) process.stderr.write('\n');
      shown = false;
    },
  };
}
