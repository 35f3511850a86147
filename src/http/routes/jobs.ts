/**
 * Jobs: submit one transaction, read (and long-poll) one job, list the caller's jobs, cancel.
 */
import type { Context } from 'koa';
import type { Authenticator } from '../../auth/authenticator.js';
import type { JobStatus } from '../../db/sql/rows.js';
import type { Jobs } from '../../jobs/usecases.js';
import { jsonBody, requireJson } from '../body.js';
import { idempotencyOf } from '../idempotency.js';
import { authenticate, clientOf } from '../middleware.js';
import {
  common4xx,
  conditionalGet,
  gone,
  idParameter,
  json,
  page,
  problem,
  queryParameters,
  ref,
  submitErrors,
  submitParameters,
  submitted,
  unauthorized,
} from '../openapi.js';
import { answerGet, answerSubmit } from '../respond.js';
import type { Route } from '../route.js';
import { listJobsQuerySchema } from '../schemas.js';
import {
  invalidCursor,
  parseListJobsQuery,
  parseTransaction,
  parseWaitQuery,
} from '../validation.js';
import { cursors, jobLocation, jobResource } from '../views.js';

export interface JobRoutesDeps {
  jobs: Jobs;
  auth: Authenticator;
  maxBodyBytes: number;
}

const idOf = (ctx: Context) => (ctx.params as { id?: string }).id ?? '';

export function jobRoutes(deps: JobRoutesDeps): Route[] {
  const { jobs } = deps;
  const auth = authenticate(deps.auth);
  return [
    {
      // Accept one transaction: 202 once its job row (pending, or started) is committed.
      method: 'post',
      path: '/normalize_merchant',
      handle: [
        auth,
        requireJson,
        jsonBody(deps.maxBodyBytes),
        async (ctx) => {
          const owner = clientOf(ctx).id;
          const transaction = parseTransaction(ctx.request.body);
          const { row, replayed } = await jobs.submitJob(
            owner,
            transaction,
            idempotencyOf(ctx, transaction),
          );
          const watched = jobs.job(owner, row.id);
          await answerSubmit(
            ctx,
            jobs,
            { watched, row, replayed },
            jobResource,
            jobLocation(row.id),
          );
        },
      ],
      doc: {
        operationId: 'submitTransaction',
        tags: ['Jobs'],
        summary: 'Submit one transaction',
        description:
          'Stores the transaction as a job and answers `202` once it is committed, with the job ' +
          '(`pending`, or `running` when a slot was free and nothing queued) and its ' +
          '`Location`; read that (`?wait=N` long-polls) until `status` is ' +
          '`succeeded`, `failed` or `canceled`. With `Prefer: wait=N` the answer is held up to ' +
          'N s and is `200` with the finished job if it finishes in time. An `Idempotency-Key` ' +
          'makes a retry safe.',
        parameters: submitParameters,
        requestBody: { required: true, content: json(ref('Transaction')) },
        responses: {
          ...submitted('Job', 'Accepted: the job is stored; read its Location.'),
          ...submitErrors,
        },
      },
    },
    {
      // The caller's jobs, newest first, cursor-paginated; filters: status (comma list), batch.
      method: 'get',
      path: '/jobs',
      handle: [
        auth,
        async (ctx) => {
          const query = parseListJobsQuery(ctx.query);
          const beforeSeq =
            query.cursor === undefined ? undefined : cursors.decode('seq', query.cursor);
          if (query.cursor !== undefined && beforeSeq === undefined) throw invalidCursor();
          const rows = await jobs.listJobs(clientOf(ctx).id, {
            statuses: query.status?.split(',') as JobStatus[] | undefined,
            batchId: query.batch?.toLowerCase(),
            beforeSeq,
            limit: query.limit + 1,
          });
          const page = rows.slice(0, query.limit);
          const last = page.at(-1);
          const nextCursor =
            rows.length > query.limit && last ? cursors.encode('seq', last.seq) : null;
          if (nextCursor) {
            const next = new URLSearchParams({ ...ctx.query, cursor: nextCursor } as Record<
              string,
              string
            >);
            ctx.set('Link', `</jobs?${next.toString()}>; rel="next"`);
          }
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { jobs: page.map(jobResource), next_cursor: nextCursor };
        },
      ],
      doc: {
        operationId: 'listJobs',
        tags: ['Jobs'],
        summary: 'Jobs, newest first, cursor-paginated',
        description:
          'Your jobs, newest first, optionally only those in some statuses or of one batch. ' +
          "Pass a page's `next_cursor` as `cursor` for the next page (or follow `Link`).",
        parameters: queryParameters(listJobsQuerySchema),
        responses: {
          '200': page('One page; `Link: <…>; rel="next"` when there is another.', 'JobList'),
          ...common4xx,
        },
      },
    },
    {
      // One job; `?wait=N` long-polls until it is finished; ETag / If-None-Match -> 304.
      method: 'get',
      path: '/jobs/:id',
      handle: [
        auth,
        async (ctx) => {
          const { wait = 0 } = parseWaitQuery(ctx.query);
          const id = idOf(ctx);
          await answerGet(ctx, jobs, jobs.job(clientOf(ctx).id, id), jobResource, wait);
        },
      ],
      doc: {
        ...conditionalGet('getJob', 'One job; long-poll with ?wait', 'Job', 'job'),
        tags: ['Jobs'],
        description:
          'The job: its status, and once finished its `result` (or `error`). `?wait=N` holds ' +
          'the request up to N s until it is finished; with `If-None-Match`, until it differs ' +
          'from that ETag (304 if it never did). While it is not finished, `Retry-After` says ' +
          'when looking again is worthwhile.',
      },
    },
    {
      // Cancel: pending -> canceled at once; running -> canceled, and the runner holding it
      // aborts the attempt (its result is discarded); finished -> 409.
      method: 'delete',
      path: '/jobs/:id',
      handle: [
        auth,
        async (ctx) => {
          const row = await jobs.cancelJob(clientOf(ctx).id, idOf(ctx));
          ctx.set('Cache-Control', 'no-store');
          ctx.body = jobResource(row);
        },
      ],
      doc: {
        operationId: 'cancelJob',
        tags: ['Jobs'],
        summary: 'Cancel a pending or running job',
        description:
          'A pending job is canceled at once; a running one too, and the attempt under way is ' +
          'aborted (its result discarded). A finished job is a 409 saying how it finished.',
        parameters: [idParameter('job')],
        responses: {
          '200': { description: 'Canceled.', content: json(ref('Job')) },
          '401': unauthorized,
          '404': problem('No such job.'),
          '409': problem('Already finished (`job_status` says how).'),
          '410': gone('job'),
          '503': common4xx['503'],
        },
      },
    },
  ];
}
