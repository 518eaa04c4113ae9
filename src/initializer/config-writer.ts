/**
 * etcd's config file for this member: the template (--etcd-config-template) with the member's
 * identity and start state, rendered for the etcd release that will read it, and written where etcd
 * reads it (--etcd-config-file) whole, so etcd never reads half a file.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { writeFileDurably } from '../durable-file.js';
import { etcdTools, etcdVersion } from '../etcd/tools.js';
import { InitializationError, type InitializerDeps } from './context.js';
import { renderEtcdConfig, type EtcdStart, type EtcdTarget, type MemberIdentity } from './etcd-config.js';
import { noteText } from './etcd-config-version.js';

export class EtcdConfigWriter {
  constructor(private readonly deps: Pick<InitializerDeps, 'config' | 'log'>) {}

  /** The config for `start`, for the release that will read it. */
  async configFor(start: EtcdStart): Promise<string> {
    return this.render(start, await this.target());
  }

  /** --etcd-config-file, when set. */
  async write(rendered: string): Promise<void> {
    const file = this.deps.config.etcdConfigFile;
    if (file) await writeFileDurably(file, rendered);
  }

  /**
   * The etcd that reads GET /config: --etcd-version, or the version of the etcd beside this sidecar
   * (--etcd-bin-dir or PATH). Unknown (no etcd here, and no --etcd-version): the template is passed
   * on unchecked, as before versions mattered.
   */
  async target(): Promise<EtcdTarget | undefined> {
    const c = this.deps.config;
    if (c.etcdVersion) return { minor: c.etcdVersion, maxLearners: c.maxLearners };
    try {
      const { minor } = await etcdVersion(etcdTools(c.etcdBinDir || undefined));
      return { minor, maxLearners: c.maxLearners };
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, "etcd's version is unknown (set --etcd-version): GET /config passes the template on unchecked");
      return undefined;
    }
  }

  render(start: EtcdStart, target: EtcdTarget | undefined): string {
    const c = this.deps.config;
    const identity: MemberIdentity = {
      name: c.name,
      dataDir: c.dataDir,
      initialClusterToken: c.initialClusterToken,
      initialAdvertisePeerUrls: c.initialAdvertisePeerUrls,
      advertiseClientUrls: c.advertiseClientUrls,
      listenPeerUrls: c.listenPeerUrls,
      listenClientUrls: c.listenClientUrls,
    };
    const { yaml, notes } = renderEtcdConfig(identity, start, c.etcdConfigTemplate ? readTemplate(c.etcdConfigTemplate) : {}, target);
    for (const n of notes) this.deps.log.warn({ key: n.key, etcd: target?.minor }, `etcd config template: ${noteText(n)}`);
    return yaml;
  }
}

function readTemplate(path: string): Record<string, unknown> {
  const doc: unknown = parseYaml(readFileSync(path, 'utf8'));
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new InitializationError(`--etcd-config-template ${path}: expected a mapping of etcd settings`);
  return doc as Record<string, unknown>;
}
