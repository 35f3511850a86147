/**
 * `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a client that retries a POST
 * with the same key gets the job or batch the first request created, and no new work. The key is
 * stored on that row with a fingerprint of the body; the same key with another body is refused
 * (the use-case throws IdempotencyKeyReusedError, a 422).
 * Keys live as long as their row (JOB_RETENTION_DAYS after it finished, at least a day).
 */
import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import type { Idempotency } from '../db/sql/rows.js';
import { HttpProblem, PROBLEM_TYPES } from './problem.js';

// The draft's value is a Structured Field string; a bare token is accepted too.
const KEY = /^(?:"([\x21\x23-\x5b\x5d-\x7e]{1,255})"|([\x21\x23-\x5b\x5d-\x7e]{1,255}))$/;

/** The request's key and body fingerprint; `undefined` without the header; 400 if malformed. */
export function idempotencyOf(ctx: Context, body: unknown): Idempotency | undefined {
  const key = idempotencyKeyOf(ctx);
  return key === undefined ? undefined : { key, requestHash: fingerprint(body) };
}

/** The request's key; `undefined` without the header; 400 if malformed. */
export function idempotencyKeyOf(ctx: Context): string | undefined {
  const header = ctx.get('Idempotency-Key');
  if (!header) return undefined;
  const match = KEY.exec(header.trim());
  const key = match?.[1] ?? match?.[2];
  if (!key) {
    throw new HttpProblem(
      400,
      PROBLEM_TYPES.invalidIdempotencyKey,
      'Invalid Idempotency-Key',
      'Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces, quotes or ' +
        'backslashes), optionally in double quotes, e.g. "9f0c6c1e-2d1b-4c1a-9a57-0d1f1c0c7b9e".',
    );
  }
  return key;
}

/** sha256 of the body as canonical JSON (object keys sorted), so key order does not matter. */
export function fingerprint(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}
