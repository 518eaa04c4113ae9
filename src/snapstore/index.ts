export { openStore, localPath } from './open.js';
export { LocalStore } from './local.js';
export type { S3Settings } from './s3.js';
export type { GcsSettings } from './gcs.js';
export { checkObjectName, nameProblem } from './names.js';
export { StoreError, listAll, type ListPage, type ObjectInfo, type PutOptions, type PutResult, type SnapStore, type StoreErrorCode } from './types.js';
export { StoreProbe, type StoreHealth } from './probe.js';
