/**
 * The replay rates this member measured: every restore, drill and compaction that replayed deltas
 * appends what it took to a small JSON file beside the data dir, and the backup leader estimates
 * how long a restore of its chain would take from them (snapshot/restore-estimate.ts). Beside the
 * data dir because that is the volume that outlives the container, and where a restore runs its
 * temporary etcd by default: the rate measured there is the one the next restore will see.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { writeFileDurably } from '../durable-file.js';
import { parseJson } from '../json.js';

export const ReplaySample = Type.Object({
  at: Type.String({ format: 'date-time' }),
  kind: Type.Union([Type.Literal('restore'), Type.Literal('drill'), Type.Literal('compact')]),
  /** Revisions replayed into the temporary etcd, one transaction each. */
  revisions: Type.Integer({ minimum: 0 }),
  events: Type.Integer({ minimum: 0 }),
  replayMs: Type.Integer({ minimum: 0 }),
  /** The full snapshot's db, and the time to fetch it, restore it, and restore the replayed db again. */
  fullDbBytes: Type.Integer({ minimum: 0 }),
  fullMs: Type.Integer({ minimum: 0 }),
});
export type ReplaySample = Static<typeof ReplaySample>;

const RatesFile = Type.Object({ samples: Type.Array(ReplaySample) });

/** The newest samples kept: enough to smooth one odd run, few enough to follow a change of disk. */
const KEPT = 10;

/** Where the member's rates live: `<data-dir's parent>/etcd-backup-sidecar-<name>.replay-rates.json`. */
export function replayRatesFile(dataDir: string, memberName: string): string {
  return join(dirname(resolve(dataDir)), `etcd-backup-sidecar-${memberName}.replay-rates.json`);
}

/** What a restore reports of itself (RestoreResult's fields; named here so the snapshotter can read rates without importing the restore). */
export interface MeasuredRestore {
  revision: number;
  fullRevision: number;
  fullDbBytes: number;
  eventsApplied: number;
  timings: { fetchFullMs: number; restoreFullMs: number; replayMs: number; finalizeMs: number };
}

/** What a restore measured, as a sample; undefined when it replayed nothing (no rate to learn). */
export function sampleOf(result: MeasuredRestore, kind: ReplaySample['kind'], at: Date): ReplaySample | undefined {
  const revisions = result.revision - result.fullRevision;
  if (revisions <= 0 || result.timings.replayMs <= 0) return undefined;
  const t = result.timings;
  return { at: at.toISOString(), kind, revisions, events: result.eventsApplied, replayMs: t.replayMs, fullDbBytes: result.fullDbBytes, fullMs: t.fetchFullMs + t.restoreFullMs + t.finalizeMs };
}

/** The samples in the file, oldest first; none when it is missing or unreadable (then the defaults apply). */
export async function readReplaySamples(file: string): Promise<{ samples: ReplaySample[]; problem?: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { samples: [] };
    return { samples: [], problem: `${file}: ${(err as Error).message}` };
  }
  const parsed = parseJson(RatesFile, text);
  return parsed.ok ? { samples: parsed.value.samples } : { samples: [], problem: `${file}: ${parsed.problem}` };
}

/** Appends a sample, keeping the newest few. A restore and a drill at once may drop one of the two: a rate, not a record. */
export async function recordReplaySample(file: string, sample: ReplaySample): Promise<void> {
  const { samples } = await readReplaySamples(file);
  const kept = [...samples, sample].slice(-KEPT);
  await writeFileDurably(file, `${JSON.stringify({ samples: kept }, null, 2)}\n`);
}
