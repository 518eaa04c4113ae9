/**
 * Turning backups into a data dir: `restore()` from a chain in the store (from-backups.ts),
 * `restoreFromDataDir()` from a surviving member's copy (local-copy.ts), the drill (drill.ts).
 */
export { restore, restoreOptionsFromConfig, WORK_PREFIX, type RestoreOptions, type RestorePhase, type RestoreProgress, type RestoreResult } from './from-backups.js';
export { RestoreError, type RestoreErrorCode } from './plan.js';
export { finishInterruptedSwap } from './swap.js';
export { restoreFromDataDir } from './local-copy.js';
