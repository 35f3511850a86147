/**
 * How jobs and batches are answered, shared by their routes: conditional and long-poll GETs, and
 * the answer to a submit (202, or 200 once finished within `Prefer: wait`).
 */
import type { Context } from 'koa';
import type { Jobs, Watched } from '../jobs/usecases.js';
import {
  etagOf,
  etagOfJson,
  ifNoneMatch,
  matchesAny,
  preferredWait,
  whileConnected,
} from './waiting.js';

/**
 * Answers with `json`, the resource already serialized for its ETag: the same body and
 * `Content-Type` Koa sends for the object, without serializing it a second time.
 */
function sendJson(ctx: Context, json: string) {
  ctx.type = 'json';
  ctx.body = json;
}

/** Waits (long-poll) for `watched` while the client stays connected. */
async function waitWhileConnected<Row>(
  ctx: Context,
  jobs: Jobs,
  watched: Watched<Row>,
  seconds: number,
  settled: (row: Row) => boolean,
): Promise<Row | undefined> {
  const connection = whileConnected(ctx);
  try {
    return await jobs.wait(watched, { seconds, settled, signal: connection.signal });
  } finally {
    connection.done();
  }
}

/**
 * GET with `?wait=N` and `If-None-Match`: held until the resource is final or (given a tag) no
 * longer matches it; `304` when the client's tag still matches at the end.
 */
export async function answerGet<Row, View>(
  ctx: Context,
  jobs: Jobs,
  watched: Watched<Row>,
  view: (row: Row) => View,
  waitSeconds: number,
): Promise<void> {
  const tags = ifNoneMatch(ctx);
  const row = await waitWhileConnected(
    ctx,
    jobs,
    watched,
    waitSeconds,
    (r) => watched.isFinal(r) || (tags !== undefined && !matchesAny(tags, etagOf(view(r)))),
  );
  if (row === undefined) throw jobs.missing(watched.kind, watched.id);
  const json = JSON.stringify(view(row));
  const etag = etagOfJson(json);
  ctx.set('ETag', etag);
  // Caches may keep it but must revalidate: the state changes until it is final.
  ctx.set('Cache-Control', 'no-cache');
  if (!watched.isFinal(row)) ctx.set('Retry-After', String(await watched.retryAfter(row)));
  if (matchesAny(tags, etag)) {
    ctx.status = 304;
    return;
  }
  sendJson(ctx, json);
}

/**
 * The answer to an accepted (or replayed) submit: `202` with Location and Retry-After; with
 * `Prefer: wait=N`, held up to N s and `200` if the resource is final by then.
 */
export async function answerSubmit<Row, View>(
  ctx: Context,
  jobs: Jobs,
  submitted: { watched: Watched<Row>; row: Row; replayed: boolean },
  view: (row: Row) => View,
  location: string,
  decorate: (view: View) => unknown = (v) => v,
): Promise<void> {
  const { watched, row } = submitted;
  if (submitted.replayed) ctx.set('Idempotent-Replayed', 'true');
  const waitSeconds = preferredWait(ctx);
  let current = row;
  if (waitSeconds > 0) {
    ctx.set('Preference-Applied', `wait=${waitSeconds}`);
    if (!watched.isFinal(row)) {
      current =
        (await waitWhileConnected(ctx, jobs, watched, waitSeconds, (r) => watched.isFinal(r))) ??
        row;
    }
  }
  ctx.set('Location', location);
  const body = view(current);
  const json = JSON.stringify(body);
  ctx.set('ETag', etagOfJson(json));
  if (waitSeconds > 0 && watched.isFinal(current)) {
    ctx.status = 200;
    ctx.set('Content-Location', location);
  } else {
    ctx.status = 202;
    if (!watched.isFinal(current)) {
      ctx.set('Retry-After', String(watched.retryAfterSubmitted(current)));
    }
  }
  const decorated = decorate(body);
  if (decorated === body) sendJson(ctx, json);
  else ctx.body = decorated;
}
