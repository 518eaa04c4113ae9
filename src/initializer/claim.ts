// The recovery claim: one small object in the store, advanced only by conditional writes, so at most
// one member holds a recovery epoch. decide() chooses who should recover; the claim settles the race
// when two members chose at the same moment from different reads, and makes a second recovery of the
// same epoch impossible: a holder that restarts resumes its own epoch, any other member must take
// the next one, after the holder went silent.

import { Type, type Static } from '@sinclair/typebox';
import { parseJson } from '../json.js';
import { StoreError, type SnapStore } from '../snapstore/index.js';
import type { RecoveryClaim, RecoveryFacts } from './decide.js';

export const CLAIM_OBJECT = 'recovery/claim.json';

const ClaimSchema = Type.Object({
  epoch: Type.Integer({ minimum: 1 }),
  holder: Type.String({ minLength: 1 }),
  source: Type.Union([Type.Literal('backups'), Type.Literal('local-copy')]),
  state: Type.Union([Type.Literal('claimed'), Type.Literal('done')]),
  /** When it was written, by the writer's clock: for people reading the object, never compared. */
  at: Type.Optional(Type.String()),
});

type StoredClaim = Static<typeof ClaimSchema>;

export class ClaimError extends Error {
  override name = 'ClaimError';
}

/** The claim in the store and its version; `{}` when none was ever written. */
export async function readClaim(store: SnapStore): Promise<RecoveryFacts> {
  const found = await store.readVersioned(CLAIM_OBJECT);
  if (!found) return {};
  const parsed = parseJson(ClaimSchema, found.body.toString('utf8'));
  if (!parsed.ok) throw new ClaimError(`${store.url}: ${CLAIM_OBJECT} is not a recovery claim (${parsed.problem}); move it away once no recovery runs`);
  const { epoch, holder, source, state } = parsed.value;
  return { claim: { epoch, holder, source, state }, version: found.version };
}

/**
 * Writes `next` only if the claim is still the version read (`undefined`: only if there is none).
 * Resolves to the new version, or to undefined when another member wrote first: decide again.
 */
export async function advanceClaim(store: SnapStore, next: RecoveryClaim, expected: string | undefined, now: Date = new Date()): Promise<string | undefined> {
  const body: StoredClaim = { ...next, at: now.toISOString() };
  try {
    return await store.putIfVersion(CLAIM_OBJECT, Buffer.from(JSON.stringify(body)), expected, { metadata: { kind: 'recovery-claim' } });
  } catch (err) {
    if (err instanceof StoreError && err.code === 'precondition_failed') return undefined;
    throw err;
  }
}
