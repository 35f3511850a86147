import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Context, Next } from 'koa';
import type { Authenticator, Principal } from '../auth/authenticator.js';
import { isTransientDbError, outcomeUnknown } from '../db/transient.js';
import type { Logger } from '../log.js';
import { HttpProblem, PROBLEM_TYPES, type ProblemBody, problemOf } from './problem.js';

export interface State {
  requestId: string;
  /**
   * Carries the request id, and the client once authenticated. Made on first use: most requests
   * log only their request line, which needs no child logger (see `requestContext`).
   */
  readonly log: Logger;
  /** The authenticated client (set by `authenticate` on the calls that need a key). */
  client?: Principal;
}

/** The bindings every log line of a request carries: its id, then its client when known. */
function bindingsOf(state: State): { requestId: string; client?: string } {
  return state.client
    ? { requestId: state.requestId, client: state.client.name }
    : { requestId: state.requestId };
}

/** `ctx.state` of a new request: `log` is a child of `log` made when first read. */
function requestState(ctx: Context, log: Logger, requestId: string): State {
  const state = ctx.state as State;
  state.requestId = requestId;
  let child: { logger: Logger; client: Principal | undefined } | undefined;
  Object.defineProperty(state, 'log', {
    configurable: true,
    enumerable: true,
    get(): Logger {
      // A client authenticated since the child was made: bind it too.
      if (child?.client !== state.client) child = undefined;
      child ??= { logger: log.child(bindingsOf(state)), client: state.client };
      return child.logger;
    },
  });
  return state;
}

/**
 * Requires an API key (`Authorization: Bearer …`): 401 without a valid one (429 once the client
 * address has failed too often). Runs before the body is read, so an unauthenticated request
 * costs no parsing.
 */
export function authenticate(auth: Authenticator) {
  return async (ctx: Context, next: Next) => {
    const client = await auth.authenticate(ctx.get('Authorization'), ctx.ip);
    (ctx.state as State).client = client;
    await next();
  };
}

/** The authenticated client of a request that went through `authenticate`. */
export function clientOf(ctx: Context): Principal {
  const client = (ctx.state as State).client;
  if (!client) throw new Error('route is missing the authenticate middleware');
  return client;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * Outermost middleware: assigns the request id (the caller's X-Request-Id when sane), logs one
 * line per request, and renders every failure as problem+json.
 */
export interface RequestLine {
  method: string;
  /** The route template (`/jobs/:id`), or the path when no route matched. */
  route: string;
  status: number;
  durationMs: number;
}

export function requestContext(log: Logger, observe?: (line: RequestLine) => void) {
  return async (ctx: Context, next: Next) => {
    const started = performance.now();
    const incoming = ctx.get('X-Request-Id');
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const state = requestState(ctx, log, requestId);
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
      if (ctx.body === undefined && ctx.status === 501) {
        // allowedMethods() answers 501 Not Implemented, as plain text, to a method no route has
        // (TRACE, PROPFIND, ...). Asking for it is the client's mistake, not a server fault:
        // 405 where the path exists (Allow lists what it takes), 404 where it does not.
        if (ctx.response.get('Allow')) ctx.status = 405;
        else {
          ctx.remove('Allow');
          ctx.status = 404;
        }
      }
      if (ctx.body === undefined && ctx.status === 404) {
        throw new HttpProblem(
          404,
          PROBLEM_TYPES.notFound,
          'Not Found',
          `No route for ${ctx.method} ${ctx.path}`,
        );
      }
      if (ctx.body === undefined && ctx.status === 405) {
        // Set by the router's allowedMethods(), which also set the Allow header.
        throw new HttpProblem(
          405,
          PROBLEM_TYPES.methodNotAllowed,
          'Method Not Allowed',
          `${ctx.method} is not supported on ${ctx.path}; allowed: ${ctx.response.get('Allow')}.`,
        );
      }
    } catch (err) {
      renderProblem(ctx, err);
    } finally {
      // Unmatched paths are collapsed, so junk URLs cannot blow up metric label cardinality.
      const route = (ctx as Context & { _matchedRoute?: string })._matchedRoute ?? '(unmatched)';
      const line: RequestLine = {
        method: ctx.method,
        route,
        status: ctx.status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      };
      // The root logger with the request's bindings as fields writes the same line as its
      // child would, without making one per request (nor anything at all below `info`).
      const level = ctx.status >= 500 ? 'error' : 'info';
      if (log.isLevelEnabled(level)) {
        log[level]({ ...bindingsOf(state), ...line, path: ctx.path }, 'request');
      }
      observe?.(line);
    }
  };
}

function renderProblem(ctx: Context, err: unknown) {
  const problem = problemOf(err) ?? unexpected(ctx, err);
  ctx.status = problem.status;
  for (const [name, value] of Object.entries(problem.headers)) ctx.set(name, value);
  ctx.type = 'application/problem+json';
  ctx.body = problem.toBody() satisfies ProblemBody;
}

/** Anything that is not a domain or client error: a database outage (503), or a 500. */
function unexpected(ctx: Context, err: unknown): HttpProblem {
  const log = (ctx.state as State).log;
  if (isTransientDbError(err)) {
    log.error({ err }, 'database unavailable');
    // A write whose answer never came may have been committed: say so, rather than promise
    // that nothing was stored. An Idempotency-Key makes the retry safe either way.
    const unsure = outcomeUnknown(err) && ctx.method !== 'GET' && ctx.method !== 'HEAD';
    return new HttpProblem(
      503,
      PROBLEM_TYPES.unavailable,
      'Service Unavailable',
      unsure
        ? 'The database stopped answering while this request was under way: it may or may ' +
            'not have been stored. Retrying with the same Idempotency-Key is safe; without ' +
            'one, a retry may create a second job.'
        : 'The database is unreachable; nothing was stored. Retry later.',
      undefined,
      { 'Retry-After': '5' },
    );
  }
  const problem = fromHttpError(err);
  if (problem.status >= 500) log.error({ err }, 'unhandled error');
  return problem;
}

/** Errors thrown by koa, koa-body (co-body/raw-body) or the router, mapped to our problems. */
function fromHttpError(err: unknown): HttpProblem {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    status?: unknown;
    statusCode?: unknown;
    expose?: unknown;
    message?: unknown;
    type?: unknown;
  };
  const status = Number(e.status ?? e.statusCode);
  const message = typeof e.message === 'string' ? e.message : '';
  if (!Number.isInteger(status) || status < 400 || status >= 500) {
    return new HttpProblem(500, 'about:blank', 'Internal Server Error');
  }
  if (status === 413) {
    return new HttpProblem(413, PROBLEM_TYPES.tooLarge, 'Content Too Large', bodyTooLarge(e));
  }
  if (status === 400 && (e.type === 'entity.parse.failed' || /JSON/i.test(message))) {
    return new HttpProblem(
      400,
      PROBLEM_TYPES.malformedJson,
      'Malformed JSON',
      `The request body is not valid JSON: ${message}`,
    );
  }
  if (status === 415) {
    return new HttpProblem(
      415,
      PROBLEM_TYPES.unsupportedMediaType,
      'Unsupported Media Type',
      message,
    );
  }
  if (status === 405) {
    return new HttpProblem(405, PROBLEM_TYPES.methodNotAllowed, 'Method Not Allowed', message);
  }
  const detail = e.expose === true && message ? message : undefined;
  return new HttpProblem(status, 'about:blank', STATUS_CODES[status] ?? 'Client Error', detail);
}

function bodyTooLarge(e: object): string {
  const limit = (e as { limit?: unknown }).limit;
  return typeof limit === 'number'
    ? `The request body is larger than the limit of ${limit} bytes.`
    : 'The request body is larger than the limit.';
}
