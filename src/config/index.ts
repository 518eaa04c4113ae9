export { loadConfig, ConfigError, type ConfigInput, type LoadedConfig, type Source } from './load.js';
export { OPTIONS, SPECS, camelCase, envName, redactedConfig, type Config, type OptionSpec, type PeerEntry, type HostPort } from './options.js';
export { parseDuration, parseSize, formatDuration, formatSize } from './units.js';
export { loadSecrets, redactText, redactor, REDACTED, type Secrets } from './secrets.js';
export { isLoopbackHost } from './load.js';
