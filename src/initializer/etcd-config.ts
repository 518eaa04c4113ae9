// etcd's config file for this member, as the initializer decided it. Pure: the same inputs give the
// same YAML, so `GET /config` can be rendered again at any time and tested without processes.

import { stringify } from 'yaml';
import type { ClusterMember } from './decide.js';
import { adaptEtcdConfig, noteText, type ConfigNote } from './etcd-config-version.js';

export type ClusterState = 'new' | 'existing';

export interface MemberIdentity {
  name: string;
  dataDir: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
  advertiseClientUrls: string[];
  listenPeerUrls: string[];
  listenClientUrls: string[];
}

export interface EtcdStart {
  state: ClusterState;
  /** name=peerURL entries, as etcd's --initial-cluster. */
  initialCluster: { name: string; peerURL: string }[];
}

/**
 * The --initial-cluster a member joining a running cluster must start with: every member the
 * cluster lists (etcd 3.4 refuses `existing` unless the peer URLs match the cluster's exactly),
 * this member under its own name. Members never started have no name yet; they keep the name the
 * configuration gives their peer URL, or one made from their ID.
 */
export function joiningCluster(
  members: readonly ClusterMember[],
  self: { name: string; peerURLs: string[] },
  configured: readonly { name: string; peerURL: string }[],
): { name: string; peerURL: string }[] {
  const entries: { name: string; peerURL: string }[] = [];
  for (const m of members) {
    const isSelf = m.peerURLs.some((u) => self.peerURLs.includes(u)) || (m.name !== '' && m.name === self.name);
    const name = isSelf ? self.name : m.name || configured.find((c) => m.peerURLs.includes(c.peerURL))?.name || `member-${m.id}`;
    for (const peerURL of m.peerURLs) entries.push({ name, peerURL });
  }
  if (!entries.some((e) => e.name === self.name)) for (const peerURL of self.peerURLs) entries.push({ name: self.name, peerURL });
  return entries;
}

export const initialClusterText = (entries: readonly { name: string; peerURL: string }[]): string => entries.map((e) => `${e.name}=${e.peerURL}`).join(',');

/** The etcd that reads the config: its minor ("3.6", from `etcd --version`), and --max-learners for 3.6. */
export interface EtcdTarget {
  minor: string;
  maxLearners?: number;
}

export interface RenderedConfig {
  yaml: string;
  /** Template keys renamed or dropped for the target; also in the YAML's header comment. */
  notes: ConfigNote[];
}

/**
 * The YAML etcd reads with --config-file. The template (an operator's file of TLS, quotas, tuning)
 * comes first, made fit for the target's minor when one is known; the member's identity and cluster
 * settings are always the initializer's, since a template that set them could start a member into
 * the wrong cluster.
 */
export function renderEtcdConfig(identity: MemberIdentity, start: EtcdStart, template: Record<string, unknown> = {}, target?: EtcdTarget): RenderedConfig {
  const adapted = target ? adaptEtcdConfig(template, target.minor) : undefined;
  const notes = adapted?.notes ?? [];
  const doc: Record<string, unknown> = {
    ...(adapted?.doc ?? template),
    name: identity.name,
    'data-dir': identity.dataDir,
    'listen-peer-urls': identity.listenPeerUrls.join(','),
    'listen-client-urls': identity.listenClientUrls.join(','),
    'initial-advertise-peer-urls': identity.initialAdvertisePeerUrls.join(','),
    'advertise-client-urls': identity.advertiseClientUrls.join(','),
    'initial-cluster': initialClusterText(start.initialCluster),
    'initial-cluster-state': start.state,
    'initial-cluster-token': identity.initialClusterToken,
  };
  // The initializer adds learners up to --max-learners: etcd must allow as many, no more and no
  // fewer, or a member add is refused (or one more learner than decided slows the cluster).
  if (adapted?.minor === '3.6' && target?.maxLearners !== undefined) {
    if (doc['max-learners'] !== undefined && Number(doc['max-learners']) !== target.maxLearners) {
      notes.push({ key: 'max-learners', action: 'dropped', why: `the sidecar's --max-learners ${target.maxLearners} applies` });
    }
    doc['max-learners'] = target.maxLearners;
  }
  // Never from a template: a forced new cluster is applied again at every restart of etcd, and
  // each time drops every member that joined since. Recovery restores a new data dir instead.
  delete doc['force-new-cluster'];
  const header = notes.length ? `# For etcd ${adapted?.minor ?? ''}: the template's\n${notes.map((n) => `#   ${noteText(n)}\n`).join('')}` : '';
  return { yaml: header + stringify(doc), notes };
}
