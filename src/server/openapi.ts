import { stringify } from 'yaml';
import { createLogger } from '../logger.js';
import { buildServer } from './app.js';
import type { ServerDeps } from './deps.js';
import { Metrics } from './metrics.js';

const notServing = (): never => {
  throw new Error('the API is built only to read its spec; nothing is served');
};

/** The OpenAPI document, generated from the route schemas (the source of truth). */
export async function openapiDocument(): Promise<unknown> {
  const deps: ServerDeps = {
    self: { name: 'spec', clientURLs: [] },
    clusterStatus: notServing,
    probeSelf: notServing,
    endpoints: notServing,
    storeHealth: notServing,
    metrics: new Metrics(),
    snapshots: { unavailable: notServing, deltasEnabled: false, takeFull: notServing, compact: notServing, takeDelta: notServing, list: notServing, state: notServing },
  };
  const app = await buildServer(deps, { bodyLimit: 1024, logger: createLogger('silent') });
  try {
    return app.swagger();
  } finally {
    await app.close();
  }
}

export async function openapiYaml(): Promise<string> {
  return `# Generated from the route schemas by \`npm run openapi\`; do not edit by hand.\n${stringify(await openapiDocument())}`;
}
