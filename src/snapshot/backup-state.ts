/**
 * What this sidecar's backups look like right now, for `/status` and the metrics: the last full and
 * delta snapshots uploaded, the revision they reach, and how far etcd has moved past it.
 */
import type { GcLockView } from './gc-locks.js';
import type { SnapshotRecord } from './record.js';
import type { RestoreEstimate } from './restore-estimate.js';

/** The estimate as /status shows it, with the objective it is held to (0: none). */
export interface RestoreEstimateView extends RestoreEstimate {
  objectiveSeconds: number;
  /** Why the objective takes no full snapshot although the estimate passes it. */
  note?: string;
}

export interface BackupState {
  takesSnapshots: boolean;
  problem?: string;
  lastFull?: SnapshotRecord;
  lastDelta?: SnapshotRecord;
  uploadedRevision?: number;
  etcdRevision?: number;
  /** The version of the backed-up member's etcd, as last read: what the snapshots record. */
  etcdVersion?: string;
  restoreEstimate?: RestoreEstimateView;
  gc?: GcLockView;
}

/** The parts of a running snapshotter the state is read from. */
export interface SnapshotterView {
  problem: string | undefined;
  lastFull: SnapshotRecord | undefined;
  deltaState: { lastUpload?: SnapshotRecord | undefined; uploadedRevision: number; etcdRevision: number } | undefined;
  restoreEstimate?: RestoreEstimate | undefined;
  restoreTimeObjectiveMs?: number;
  gc?: GcLockView | undefined;
  etcdVersion?: string | undefined;
}

export function backupStateOf(snapshotter: SnapshotterView | undefined): BackupState {
  if (!snapshotter) return { takesSnapshots: false };
  const deltas = snapshotter.deltaState;
  const state: BackupState = { takesSnapshots: true };
  if (snapshotter.problem) state.problem = snapshotter.problem;
  if (snapshotter.lastFull) state.lastFull = snapshotter.lastFull;
  if (deltas?.lastUpload) state.lastDelta = deltas.lastUpload;
  const uploaded = Math.max(snapshotter.lastFull?.lastRevision ?? 0, deltas?.uploadedRevision ?? 0);
  if (uploaded > 0) state.uploadedRevision = uploaded;
  if (deltas?.etcdRevision) state.etcdRevision = deltas.etcdRevision;
  if (snapshotter.gc) state.gc = snapshotter.gc;
  if (snapshotter.etcdVersion) state.etcdVersion = snapshotter.etcdVersion;
  const estimate = snapshotter.restoreEstimate;
  if (estimate) {
    const objectiveSeconds = (snapshotter.restoreTimeObjectiveMs ?? 0) / 1000;
    state.restoreEstimate = { ...estimate, objectiveSeconds };
    // The same rule as fullSnapshotForObjective: a new full snapshot cannot shorten the fixed part.
    if (objectiveSeconds > 0 && estimate.fullSeconds >= objectiveSeconds)
      state.restoreEstimate.note = `the full snapshot alone takes about ${estimate.fullSeconds} s, not less than the objective of ${objectiveSeconds} s: no full snapshot is taken for the objective`;
  }
  return state;
}

export interface BackupPoint {
  name: string;
  lastRevision: number;
  /** When the upload finished (its start plus its duration). */
  uploadedAt: string;
}

export interface BackupSummary {
  takesSnapshots: boolean;
  problem?: string;
  lastFull?: BackupPoint;
  lastDelta?: BackupPoint;
  uploadedRevision?: number;
  /** etcd's revision (the member's or the watch's, whichever is newer) minus uploadedRevision. */
  revisionLag?: number;
  secondsSinceLastUpload?: number;
  etcdVersion?: string;
  restoreEstimate?: RestoreEstimateView;
  gc?: GcLockView;
}

function point(r: SnapshotRecord | undefined): BackupPoint | undefined {
  return r && { name: r.name, lastRevision: r.lastRevision, uploadedAt: new Date(Date.parse(r.createdAt) + r.durationMs).toISOString() };
}

export function summarizeBackup(state: BackupState, memberRevision: number | undefined, now: number = Date.now()): BackupSummary {
  const out: BackupSummary = { takesSnapshots: state.takesSnapshots };
  if (state.problem) out.problem = state.problem;
  const full = point(state.lastFull);
  const delta = point(state.lastDelta);
  if (full) out.lastFull = full;
  if (delta) out.lastDelta = delta;
  if (state.uploadedRevision) {
    out.uploadedRevision = state.uploadedRevision;
    const etcd = Math.max(state.etcdRevision ?? 0, memberRevision ?? 0);
    if (etcd > 0) out.revisionLag = Math.max(0, etcd - state.uploadedRevision);
  }
  const last = [full, delta].filter((p) => p !== undefined).map((p) => Date.parse(p.uploadedAt));
  if (state.restoreEstimate) out.restoreEstimate = state.restoreEstimate;
  if (state.gc) out.gc = state.gc;
  if (state.etcdVersion) out.etcdVersion = state.etcdVersion;
  if (last.length > 0) out.secondsSinceLastUpload = Math.round((now - Math.max(...last)) / 100) / 10;
  return out;
}
