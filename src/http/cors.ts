/**
 * CORS for browser apps on other origins (`CORS_ORIGINS`), with `@koa/cors`. Keys travel in the
 * `Authorization` header, never in cookies, so credentials mode is off and `*` is safe to allow:
 * a page can only call the API with a key its user gave it.
 */
import cors from '@koa/cors';
import type { Context, Middleware } from 'koa';

/** Request headers a cross-origin page may send. */
export const CORS_ALLOW_HEADERS = [
  'Authorization',
  'Content-Type',
  'Idempotency-Key',
  'If-None-Match',
  'Prefer',
  'X-Request-Id',
];

/** Response headers a cross-origin page may read (beyond the CORS-safelisted ones). */
export const CORS_EXPOSE_HEADERS = [
  'Content-Location',
  'ETag',
  'Idempotent-Replayed',
  'Link',
  'Location',
  'Preference-Applied',
  'Retry-After',
  'WWW-Authenticate',
  'X-Request-Id',
];

/** How long a browser may cache a preflight answer, in seconds. */
const PREFLIGHT_MAX_AGE = 600;

/**
 * The CORS middleware for `origins` (exact origins, or `*`), or nothing when the list is empty.
 * An origin not on the list gets no CORS headers (its browser then refuses to show the answer).
 */
export function corsFor(origins: readonly string[]): Middleware | undefined {
  if (origins.length === 0) return undefined;
  const any = origins.includes('*');
  const allowed = new Set(origins);
  return cors({
    origin: (ctx: Context) => {
      if (any) return '*';
      const origin = ctx.get('Origin');
      return allowed.has(origin) ? origin : '';
    },
    allowMethods: ['GET', 'HEAD', 'POST', 'DELETE'],
    allowHeaders: CORS_ALLOW_HEADERS,
    exposeHeaders: CORS_EXPOSE_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE,
    credentials: false,
  });
}
