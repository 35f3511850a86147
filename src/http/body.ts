import type { Context, Middleware, Next } from 'koa';
import { koaBody } from 'koa-body';
import { HttpProblem, PROBLEM_TYPES } from './problem.js';

/** A JSON body parser with a size limit; everything but JSON is refused earlier (415). */
export function jsonBody(limitBytes: number): Middleware {
  const parse = koaBody({
    json: true,
    jsonLimit: limitBytes,
    jsonStrict: false,
    urlencoded: false,
    text: false,
    multipart: false,
  });
  return async (ctx, next) => {
    // co-body (and Koa's `request.length`) read Content-Length through a 32-bit conversion
    // (`~~len`), so a declared length of 2^31 or more slipped past the early check and the
    // connection was held while the body trickled in. Refuse any declared length over the
    // limit here, unread, and close the connection instead of draining a body we will not read.
    const declared = Number(ctx.get('Content-Length') || 0);
    if (declared > limitBytes) {
      throw new HttpProblem(
        413,
        PROBLEM_TYPES.tooLarge,
        'Content Too Large',
        `The request body is larger than the limit of ${limitBytes} bytes.`,
        undefined,
        { Connection: 'close' },
      );
    }
    let parsed = false;
    try {
      await parse(ctx, () => {
        parsed = true;
        return next();
      });
    } catch (err) {
      // zlib and brotli fail with errors that carry no HTTP status (Z_DATA_ERROR,
      // ERR__ERROR_FORMAT_PADDING_1, ...): a body declared `Content-Encoding: gzip` (or
      // deflate, br) that does not decode is the client's mistake, not a 500.
      if (!parsed && isDecompressionError(err)) {
        throw new HttpProblem(
          400,
          PROBLEM_TYPES.malformedBody,
          'Malformed Body',
          `The request body does not decode as its Content-Encoding header ` +
            `("${ctx.get('Content-Encoding')}") says: ${(err as Error).message}.`,
        );
      }
      throw err;
    }
  };
}

/** An error from a zlib or brotli stream: a numeric `errno` and no HTTP status. */
function isDecompressionError(err: unknown): boolean {
  const e = err as { errno?: unknown; code?: unknown; status?: unknown } | null;
  return (
    typeof e?.errno === 'number' &&
    typeof e.code === 'string' &&
    /^(Z_|ERR__ERROR|ERR_BROTLI)/.test(e.code) &&
    e.status === undefined
  );
}

/** Answers 415 unless the request declares a JSON body. */
export function requireJson(ctx: Context, next: Next) {
  return requireJsonOr('')(ctx, next);
}

/** Answers 415 unless the request declares a JSON body; `alternatives` says what else fits. */
export function requireJsonOr(alternatives: string) {
  return (ctx: Context, next: Next) => {
    if (!ctx.is('application/json')) {
      const got = ctx.get('Content-Type') || 'none';
      throw new HttpProblem(
        415,
        PROBLEM_TYPES.unsupportedMediaType,
        'Unsupported Media Type',
        `Send the body as JSON with "Content-Type: application/json"${alternatives} ` +
          `(got: ${got}).`,
      );
    }
    return next();
  };
}
