/**
 * JSON read from outside the process (the store, disk, another sidecar) is parsed against a TypeBox
 * schema, never cast: a file cut short or written by another version must be refused with the field
 * that is wrong, not crash the sidecar three calls later.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { FormatRegistry } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

// TypeBox checks no string format it was not taught; the sidecar writes times as RFC 3339.
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v)));

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/**
 * `text` as a value of `schema`, or the first problem found ("not JSON (…)", "/role: Expected union
 * value"). Properties the schema does not name are dropped, so that a newer writer's extra fields
 * never reach code that does not know them.
 */
export function parseJson<T extends TSchema>(schema: T, text: string): Parsed<Static<T>> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `not JSON (${(err as Error).message})` };
  }
  return checkJson(schema, doc);
}

/** An already parsed document as a value of `schema`, like parseJson. */
export function checkJson<T extends TSchema>(schema: T, doc: unknown): Parsed<Static<T>> {
  if (!Value.Check(schema, doc)) {
    const first = [...Value.Errors(schema, doc)][0];
    return { ok: false, problem: first ? `${first.path || '/'}: ${first.message}` : 'does not match its schema' };
  }
  return { ok: true, value: Value.Clean(schema, Value.Clone(doc)) as Static<T> };
}
