import type { Context, Next } from 'koa';
import { koaBody } from 'koa-body';
import { HttpProblem, PROBLEM_TYPES } from './problem.js';

/** A JSON body parser with a size limit; everything but JSON is refused earlier (415). */
export function jsonBody(limitBytes: number) {
  return koaBody({
    json: true,
    jsonLimit: limitBytes,
    jsonStrict: false,
    urlencoded: false,
    text: false,
    multipart: false,
  });
}

/** Answers 415 unless the request declares a JSON body. */
export function requireJson(ctx: Context, next: Next) {
  if (!ctx.is('application/json')) {
    const got = ctx.get('Content-Type') || 'none';
    throw new HttpProblem(
      415,
      PROBLEM_TYPES.unsupportedMediaType,
      'Unsupported Media Type',
      `Send the body as JSON with "Content-Type: application/json" (got: ${got}).`,
    );
  }
  return next();
}
