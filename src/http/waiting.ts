/**
 * Conditional requests (`ETag`, `If-None-Match`) and the HTTP side of long-poll (`?wait=N`,
 * `Prefer: wait=N`): the wait itself is jobs/waiting.ts; here the request's close aborts it.
 */
import type { Context } from 'koa';
import { sha256 } from '../sha256.js';
import { MAX_WAIT_SECONDS } from './schemas.js';

/** A strong ETag over the JSON a client would receive. */
export function etagOf(resource: unknown): string {
  return etagOfJson(JSON.stringify(resource));
}

/** The ETag of a resource already serialized (as it is sent). */
export function etagOfJson(json: string): string {
  return `"${sha256(json, 'base64url').slice(0, 27)}"`;
}

/** The request's If-None-Match tags (weak prefixes dropped); `undefined` without the header. */
export function ifNoneMatch(ctx: Context): string[] | undefined {
  const header = ctx.get('If-None-Match');
  if (!header) return undefined;
  return header.split(',').map((t) => t.trim().replace(/^W\//, ''));
}

export function matchesAny(tags: readonly string[] | undefined, etag: string): boolean {
  return tags !== undefined && (tags.includes('*') || tags.includes(etag));
}

/** `Prefer: wait=N` (RFC 7240), capped at MAX_WAIT_SECONDS; 0 without the preference. */
export function preferredWait(ctx: Context): number {
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i.exec(ctx.get('Prefer'));
  return match ? Math.min(MAX_WAIT_SECONDS, Number(match[1])) : 0;
}

/** An AbortSignal that fires when the client goes away; `done()` stops watching. */
export function whileConnected(ctx: Context): { signal: AbortSignal; done: () => void } {
  const gone = new AbortController();
  const onClose = () => gone.abort();
  ctx.res.once('close', onClose);
  return { signal: gone.signal, done: () => ctx.res.off('close', onClose) };
}
