export { openStore, localPath } from './open.js';
export { LocalStore, type LocalStoreOptions } from './local.js';
export type { S3Settings } from './s3.js';
export type { GcsSettings } from './gcs.js';
export type { AzureBlobSettings } from './azblob.js';
export { checkObjectName, nameProblem } from './names.js';
export {
  StoreError,
  ObjectLockedError,
  listAll,
  MAX_VERSIONED_BYTES,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  type SnapStore,
  type StoreErrorCode,
  type VersionedObject,
  type VersionedPutOptions,
} from './types.js';
export { StoreProbe, probeConditionalWrites, type ConditionalWriteProbe, type StoreHealth } from './probe.js';
