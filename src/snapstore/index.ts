export { openStore, localPath } from './open.js';
export { LocalStore } from './local.js';
export { S3Store, type S3Settings } from './s3.js';
export { GcsStore, type GcsSettings } from './gcs.js';
export { checkObjectName, nameProblem } from './names.js';
export { StoreError, listAll, type ListPage, type ObjectInfo, type PutOptions, type PutResult, type SnapStore, type StoreErrorCode } from './types.js';
