// An etcd config template made fit for the etcd minor that reads it. etcd ignores a config-file key
// it does not know without a word, so a template written for 3.5 and read by 3.6 (or the reverse)
// would lose settings silently: here every key is kept, renamed to the target's name, or dropped
// with a note naming it. Pure.

import { CONFIG_KEYS, FEATURE_GATE_IN_3_6, KNOWN_MINORS, RENAMED_IN_3_6, TLS_FLAGS, WHY_MISSING, type EtcdMinor } from './etcd-config-keys.js';

export interface ConfigNote {
  key: string;
  /** `renamed`: kept under `to`; `dropped`: the target would ignore it (or refuse the value). */
  action: 'renamed' | 'dropped';
  to?: string;
  why: string;
}

export interface AdaptedConfig {
  doc: Record<string, unknown>;
  notes: ConfigNote[];
  /** The minor whose keys were checked (a newer etcd than 3.6 is checked as 3.6). */
  minor: EtcdMinor;
}

/** The known minor whose config keys `minor` ("3.5") reads: older than 3.4 as 3.4, newer than 3.6 as 3.6. */
export function configMinor(minor: string): EtcdMinor {
  const known = KNOWN_MINORS.find((k) => k === minor);
  if (known) return known;
  const [major = 0, min = 0] = minor.split('.').map(Number);
  return major < 3 || (major === 3 && min < 4) ? '3.4' : '3.6';
}

const RENAMED_BEFORE_3_6: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(RENAMED_IN_3_6).map(([old, now]) => [now, old]));
const SWITCH_OF_GATE: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(FEATURE_GATE_IN_3_6).map(([old, gate]) => [gate, old]));

/** "A=true,B=false" as etcd's --feature-gates reads it. */
function parseGates(value: unknown): Map<string, string> {
  const gates = new Map<string, string>();
  const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
  for (const part of text.split(',')) {
    const [name, v] = part.split('=').map((s) => s.trim());
    if (name) gates.set(name, v ?? 'true');
  }
  return gates;
}

const gatesText = (gates: Map<string, string>): string => [...gates].map(([k, v]) => `${k}=${v}`).join(',');

function missingWhy(key: string, minor: EtcdMinor): string {
  if (WHY_MISSING[key]) return WHY_MISSING[key];
  if (TLS_FLAGS.has(key)) return `a flag only: a config file takes it under ${key.includes('peer-') ? 'peer-transport-security' : 'client-transport-security'}`;
  return `etcd ${minor} has no config key ${key}`;
}

/** The template for etcd `minor` (from `etcd --version`, e.g. "3.6"). */
export function adaptEtcdConfig(template: Readonly<Record<string, unknown>>, minor: string): AdaptedConfig {
  const target = configMinor(minor);
  const accepted = CONFIG_KEYS[target];
  const notes: ConfigNote[] = [];
  const doc: Record<string, unknown> = {};
  // Gates the template sets itself win over those made from experimental switches.
  const explicitGates = target === '3.6' ? parseGates(template['feature-gates']) : new Map<string, string>();
  const madeGates = new Map<string, string>();

  for (const [key, value] of Object.entries(template)) {
    if (target === '3.6' && FEATURE_GATE_IN_3_6[key]) {
      const gate = FEATURE_GATE_IN_3_6[key];
      // etcd 3.6 converts these switches itself, but panics on a value that is not a YAML boolean.
      if (typeof value !== 'boolean') notes.push({ key, action: 'dropped', why: `etcd 3.6 needs true or false here (feature gate ${gate})` });
      else if (explicitGates.has(gate)) notes.push({ key, action: 'dropped', why: `feature-gates already sets ${gate}` });
      else {
        madeGates.set(gate, String(value));
        notes.push({ key, action: 'renamed', to: `feature-gates: ${gate}=${value}`, why: 'etcd 3.6 turned this switch into a feature gate' });
      }
      continue;
    }
    if (target !== '3.6' && key === 'feature-gates') {
      for (const [gate, v] of parseGates(value)) {
        const old = SWITCH_OF_GATE[gate];
        if (old && accepted.has(old) && !(old in template)) {
          doc[old] = v === 'true';
          notes.push({ key: `feature-gates: ${gate}`, action: 'renamed', to: old, why: `etcd ${target} has the switch, not the gate` });
        } else notes.push({ key: `feature-gates: ${gate}`, action: 'dropped', why: old && old in template ? `${old} is set as well` : `etcd ${target} has no such switch` });
      }
      continue;
    }
    const renamed = target === '3.6' ? RENAMED_IN_3_6[key] : RENAMED_BEFORE_3_6[key];
    if (renamed) {
      if (renamed in template) notes.push({ key, action: 'dropped', why: `${renamed} is set as well (etcd ${target} reads that name)` });
      else if (!accepted.has(renamed)) notes.push({ key, action: 'dropped', why: `etcd ${target} has neither ${key} nor ${renamed}` });
      else {
        doc[renamed] = value;
        notes.push({ key, action: 'renamed', to: renamed, why: `etcd ${target} reads the setting under that name` });
      }
      continue;
    }
    if (accepted.has(key)) doc[key] = value;
    else notes.push({ key, action: 'dropped', why: missingWhy(key, target) });
  }
  if (target === '3.6' && (explicitGates.size > 0 || madeGates.size > 0)) doc['feature-gates'] = gatesText(new Map([...madeGates, ...explicitGates]));
  return { doc, notes, minor: target };
}

/** One line per note, for the log and the rendered file's header. */
export const noteText = (n: ConfigNote): string => (n.action === 'renamed' ? `${n.key} -> ${n.to ?? ''} (${n.why})` : `${n.key} dropped: ${n.why}`);
