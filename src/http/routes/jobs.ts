import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import { koaBody } from 'koa-body';
import type { Knex } from 'knex';
import type { Authenticator } from '../../auth/authenticator.js';
import type { Admission } from '../../jobs/admission.js';
import type { Transaction } from '../../heuristic/types.js';
import type { QueueEstimator } from '../../jobs/eta.js';
import { type JobEvents, jobTopic } from '../../jobs/events.js';
import {
  type JobRow,
  type JobStatus,
  TERMINAL_STATUSES,
  cancelJob,
  getJob,
  insertJob,
  listJobs,
} from '../../jobs/store.js';
import type { Metrics } from '../../metrics.js';
import { checkReplay, idempotencyOf } from '../idempotency.js';
import { authenticate, clientOf, requireJson } from '../middleware.js';
import { HttpProblem, PROBLEM_TYPES, notFound } from '../problem.js';
import { type ResourceKind, answerGet, answerSubmit } from '../respond.js';
import {
  parseListJobsQuery,
  parseTransaction,
  parseWaitQuery,
  invalidCursor,
} from '../validation.js';
import { type JobResource, cursors, jobLocation, jobResource } from '../views.js';

export interface JobRoutesDeps {
  db: Knex;
  auth: Authenticator;
  admission: Admission;
  events: JobEvents;
  estimator: QueueEstimator;
  maxBodyBytes: number;
  jobMaxAttempts: number;
  cacheKey: (tx: Transaction) => string | null;
  /** Called after jobs are committed, so the local runner claims them at once. */
  onJobSubmitted: () => void;
  metrics?: Metrics;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
    load: () =>
      UUID.test(id) ? getJob(deps.db, id.toLowerCase(), owner) : Promise.resolve(undefined),
    view: jobResource,
    isFinal: (row) => isTerminal(row.status),
    retryAfter: (row) => deps.estimator.forJob(row),
    retryAfterSubmitted: () => deps.estimator.forSubmitted(1),
  });
  const missing = (id: string) => () => notFound(`No job with id "${id}".`);

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
      await deps.admission.admit(client.id, 1);
      const { row, created, requestHash } = await insertJob(deps.db, {
        id: randomUUID(),
        clientId: client.id,
        transaction,
        maxAttempts: deps.jobMaxAttempts,
        idempotency,
        cacheKey: deps.cacheKey(transaction),
      }).catch((err: unknown) => {
        deps.admission.release(client.id, 1);
        throw err;
      });
      if (created) {
        deps.metrics?.jobsSubmitted.inc({ via: 'single' });
        if (row.status === 'pending') deps.onJobSubmitted();
        else {
          // Answered from the result cache: it never queued.
          deps.admission.release(client.id, 1);
          deps.metrics?.answeredWithoutCall('submit', 1);
        }
      } else {
        deps.admission.release(client.id, 1);
        if (idempotency) checkReplay(ctx, idempotency, requestHash, 'job');
      }
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
    const canceled = UUID.test(id) ? await cancelJob(deps.db, id.toLowerCase(), owner) : undefined;
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
