import Router from '@koa/router';
import { koaBody } from 'koa-body';
import { newId } from '../../ids.js';
import { jobTopic } from '../../jobs/events.js';
import {
  type JobRow,
  type JobStatus,
  TERMINAL_STATUSES,
  cancelJob,
  getJob,
  insertJob,
  listJobs,
} from '../../jobs/store.js';
import { checkReplay, idempotencyOf } from '../idempotency.js';
import { authenticate, clientOf, requireJson } from '../middleware.js';
import { missing as missingOf } from '../gone.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import { type ResourceKind, answerGet, answerSubmit } from '../respond.js';
import {
  parseListJobsQuery,
  parseTransaction,
  parseWaitQuery,
  invalidCursor,
} from '../validation.js';
import { type JobResource, cursors, jobLocation, jobResource } from '../views.js';
import type { AppDeps, ResourceRouteDeps } from '../app.js';

export type JobRoutesDeps = ResourceRouteDeps & Pick<AppDeps, 'maxBodyBytes'>;

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `read(id)` for a well-formed id (lower-cased); nothing for anything else. */
export function byUuid<T>(id: string, read: (uuid: string) => Promise<T | undefined>) {
  return UUID.test(id) ? read(id.toLowerCase()) : Promise.resolve(undefined);
}

export const isTerminal = (status: JobStatus) => TERMINAL_STATUSES.includes(status);

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

export function jobRoutes(deps: JobRoutesDeps): Router {
  const router = new Router();

  const auth = authenticate(deps.auth);
  // Another client's job is "not found", exactly like a job that does not exist.
  const jobKind = (id: string, owner: string): ResourceKind<JobRow, JobResource> => ({
    events: deps.events,
    topic: jobTopic(id),
    load: () => byUuid(id, (uuid) => getJob(deps.db, uuid, owner)),
    view: jobResource,
    isFinal: (row) => isTerminal(row.status),
    retryAfter: (row) => deps.estimator.forJob(row),
    retryAfterSubmitted: () => deps.estimator.forSubmitted(1),
  });
  // 404, or 410 for an id older than the retention period.
  const missing = (id: string) => () => missingOf('job', id, deps.jobRetentionMs);

  // Accept one transaction: 202 once its pending job row is committed.
  router.post(
    '/normalize_merchant',
    auth,
    requireJson,
    jsonBody(deps.maxBodyBytes),
    async (ctx) => {
      const client = clientOf(ctx);
      const transaction = parseTransaction(ctx.request.body);
      const idempotency = idempotencyOf(ctx, transaction);
      const { row, created, requestHash } = await deps.admission.admitting(
        client.id,
        1,
        () =>
          insertJob(deps.db, {
            id: newId(),
            clientId: client.id,
            transaction,
            maxAttempts: deps.jobMaxAttempts,
            idempotency,
            cacheKey: deps.cacheKey(transaction),
          }),
        (r) => (r.created && r.row.status === 'pending' ? 1 : 0),
      );
      if (created) {
        deps.metrics?.jobsSubmitted.inc({ via: 'single' });
        // Answered from the result cache, it never queued.
        if (row.status === 'pending') deps.onJobSubmitted();
        else deps.metrics?.answeredWithoutCall('submit', 1);
      } else if (idempotency) checkReplay(ctx, idempotency, requestHash, 'job');
      await answerSubmit(ctx, jobKind(row.id, client.id), row, jobLocation(row.id));
    },
  );

  // The caller's jobs, newest first, cursor-paginated; filters: status (comma list), batch.
  router.get('/jobs', auth, async (ctx) => {
    const query = parseListJobsQuery(ctx.query);
    const beforeSeq = query.cursor === undefined ? undefined : cursors.decode('seq', query.cursor);
    if (query.cursor !== undefined && beforeSeq === undefined) throw invalidCursor();
    const rows = await listJobs(deps.db, {
      owner: clientOf(ctx).id,
      statuses: query.status?.split(',') as JobStatus[] | undefined,
      batchId: query.batch?.toLowerCase(),
      beforeSeq,
      limit: query.limit + 1,
    });
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    const nextCursor = rows.length > query.limit && last ? cursors.encode('seq', last.seq) : null;
    if (nextCursor) {
      const next = new URLSearchParams({ ...ctx.query, cursor: nextCursor } as Record<
        string,
        string
      >);
      ctx.set('Link', `</jobs?${next.toString()}>; rel="next"`);
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { jobs: page.map(jobResource), next_cursor: nextCursor };
  });

  // One job; `?wait=N` long-polls until it is finished; ETag / If-None-Match -> 304.
  router.get('/jobs/:id', auth, async (ctx) => {
    const { wait = 0 } = parseWaitQuery(ctx.query);
    const id = ctx.params.id ?? '';
    await answerGet(ctx, jobKind(id, clientOf(ctx).id), wait, missing(id));
  });

  // Cancel: pending -> canceled at once; running -> canceled, and the runner holding it aborts
  // the attempt (its result is discarded); finished -> 409.
  router.delete('/jobs/:id', auth, async (ctx) => {
    const id = ctx.params.id ?? '';
    const owner = clientOf(ctx).id;
    const kind = jobKind(id, owner);
    const canceled = await byUuid(id, (uuid) => cancelJob(deps.db, uuid, owner));
    if (canceled) {
      // A canceled pending job no longer counts against the client's cap.
      if (canceled.previousStatus === 'pending') deps.admission.release(owner, 1);
      deps.metrics?.jobsFinished.inc({ outcome: 'canceled' });
      ctx.set('Cache-Control', 'no-store');
      ctx.body = jobResource(canceled.row);
      return;
    }
    const row = await kind.load();
    if (!row) throw missing(id)();
    throw new HttpProblem(
      409,
      PROBLEM_TYPES.jobFinished,
      'Job already finished',
      `Job ${row.id} is already ${row.status}; only pending or running jobs can be canceled.`,
      undefined,
      {},
      { job_status: row.status },
    );
  });

  return router;
}
