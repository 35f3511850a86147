/**
 * How jobs and batches are answered, shared by their routes: conditional and long-poll GETs, and
 * the answer to a submit (202, or 200 once finished within `Prefer: wait`).
 */
import type { Context } from 'koa';
import type { JobEvents } from '../jobs/events.js';
import type { HttpProblem } from './problem.js';
import { etagOf, ifNoneMatch, matchesAny, preferredWait, waitFor } from './waiting.js';

export interface ResourceKind<Row, View> {
  events: JobEvents;
  topic: string;
  load: () => Promise<Row | undefined>;
  view: (row: Row) => View;
  /** Terminal: nothing about it will change any more. */
  isFinal: (row: Row) => boolean;
  retryAfter: (row: Row) => Promise<number>;
  /** Retry-After in the answer to a submit: an estimate that costs no query. */
  retryAfterSubmitted: (row: Row) => number;
}

/**
 * GET with `?wait=N` and `If-None-Match`: held until the resource is final or (given a tag) no
 * longer matches it; `304` when the client's tag still matches at the end.
 */
export async function answerGet<Row, View>(
  ctx: Context,
  kind: ResourceKind<Row, View>,
  waitSeconds: number,
  missing: () => HttpProblem,
): Promise<void> {
  const tags = ifNoneMatch(ctx);
  const row = await waitFor(ctx, {
    events: kind.events,
    topic: kind.topic,
    waitSeconds,
    load: kind.load,
    settled: (r) =>
      kind.isFinal(r) || (tags !== undefined && !matchesAny(tags, etagOf(kind.view(r)))),
  });
  if (row === undefined) throw missing();
  const body = kind.view(row);
  const etag = etagOf(body);
  ctx.set('ETag', etag);
  // Caches may keep it but must revalidate: the state changes until it is final.
  ctx.set('Cache-Control', 'no-cache');
  if (!kind.isFinal(row)) ctx.set('Retry-After', String(await kind.retryAfter(row)));
  if (matchesAny(tags, etag)) {
    ctx.status = 304;
    return;
  }
  ctx.body = body;
}

/**
 * The answer to an accepted (or replayed) submit: `202` with Location and Retry-After; with
 * `Prefer: wait=N`, held up to N s and `200` if the resource is final by then.
 */
export async function answerSubmit<Row, View>(
  ctx: Context,
  kind: ResourceKind<Row, View>,
  row: Row,
  location: string,
  decorate: (view: View) => unknown = (view) => view,
): Promise<void> {
  const waitSeconds = preferredWait(ctx);
  let current = row;
  if (waitSeconds > 0) {
    ctx.set('Preference-Applied', `wait=${waitSeconds}`);
    if (!kind.isFinal(row)) {
      current = (await waitFor(ctx, { ...kind, waitSeconds, settled: kind.isFinal })) ?? row;
    }
  }
  ctx.set('Location', location);
  const body = kind.view(current);
  ctx.set('ETag', etagOf(body));
  if (waitSeconds > 0 && kind.isFinal(current)) {
    ctx.status = 200;
    ctx.set('Content-Location', location);
  } else {
    ctx.status = 202;
    if (!kind.isFinal(current)) ctx.set('Retry-After', String(kind.retryAfterSubmitted(current)));
  }
  ctx.body = decorate(body);
}
