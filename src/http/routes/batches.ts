/**
 * Batches: submit 1..1000 transactions at once (JSON), or up to 100,000 as a file (NDJSON, CSV);
 * read (and long-poll) a batch; page through its results in submission order, or take them all
 * as one file.
 */
import type { Context } from 'koa';
import type { Authenticator } from '../../auth/authenticator.js';
import type { Jobs } from '../../jobs/usecases.js';
import {
  FILE_MEDIA_TYPES,
  MAX_FILE_BODY_BYTES,
  fileFormatOf,
  readFileBatch,
} from '../batch-file.js';
import { jsonBody, requireJsonOr } from '../body.js';
import { idempotencyKeyOf, idempotencyOf } from '../idempotency.js';
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
} from '../openapi.js';
import { answerGet, answerSubmit } from '../respond.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import type { Route } from '../route.js';
import { MAX_BATCH_SIZE, MAX_FILE_BATCH_SIZE, pageQuerySchema } from '../schemas.js';
import { resultsFile, resultsMediaType } from '../results-file.js';
import { invalidCursor, parseBatch, parsePageQuery, parseWaitQuery } from '../validation.js';
import { batchItem, batchLocation, batchResource, cursors } from '../views.js';

export interface BatchRoutesDeps {
  jobs: Jobs;
  auth: Authenticator;
  maxBatchBodyBytes: number;
}

const idOf = (ctx: Context) => (ctx.params as { id?: string }).id ?? '';

export function batchRoutes(deps: BatchRoutesDeps): Route[] {
  const { jobs } = deps;
  const auth = authenticate(deps.auth);
  return [
    {
      // Accept 1..1000 transactions at once, all or nothing: 202 once the batch and its jobs are
      // committed, with the job ids in submission order.
      method: 'post',
      path: '/normalize_merchant/batch',
      handle: [
        auth,
        // A file (NDJSON, CSV) is read as it arrives, never by the JSON body parser.
        async (ctx, next) => {
          const format = fileFormatOf(ctx);
          if (!format) {
            await next();
            return;
          }
          const owner = clientOf(ctx).id;
          const key = idempotencyKeyOf(ctx);
          const file = readFileBatch(ctx, format);
          const { row, replayed } = await jobs.submitBatchFile(owner, file.transactions, () =>
            key === undefined ? undefined : { key, requestHash: file.fingerprint() },
          );
          const watched = jobs.batch(owner, row.id);
          await answerSubmit(
            ctx,
            jobs,
            { watched, row, replayed },
            batchResource,
            batchLocation(row.id),
          );
        },
        requireJsonOr(
          `, or a file of up to ${MAX_FILE_BATCH_SIZE} transactions as ` +
            `"${FILE_MEDIA_TYPES.csv}" or "${FILE_MEDIA_TYPES.ndjson}"`,
        ),
        jsonBody(deps.maxBatchBodyBytes),
        async (ctx) => {
          const owner = clientOf(ctx).id;
          const { transactions } = parseBatch(ctx.request.body);
          const idempotency = idempotencyOf(ctx, { transactions });
          const { row, jobIds, replayed } = await jobs.submitBatch(
            owner,
            transactions,
            idempotency,
          );
          const watched = jobs.batch(owner, row.id);
          await answerSubmit(
            ctx,
            jobs,
            { watched, row, replayed },
            batchResource,
            batchLocation(row.id),
            (view) => ({ ...view, job_ids: jobIds }),
          );
        },
      ],
      doc: {
        operationId: 'submitBatch',
        tags: ['Batches'],
        summary: `Submit 1..${MAX_BATCH_SIZE} transactions, all or nothing`,
        description:
          'Stores a batch and one job per transaction in one transaction: all of them or, if any ' +
          'is invalid, none (the 422 points at each bad item). The 202 carries `job_ids` in ' +
          'submission order; follow the batch at its Location and read `results` when `done`.',
        parameters: submitParameters,
        requestBody: {
          required: true,
          description:
            `JSON: 1..${MAX_BATCH_SIZE} transactions. NDJSON (one transaction object per line) ` +
            `or CSV (header row: date, description, amount; optional currency, mcc, reference): ` +
            `1..${MAX_FILE_BATCH_SIZE} transactions, at most ${MAX_FILE_BODY_BYTES} bytes, ` +
            'streamed; the answer then has no `job_ids`.',
          content: {
            ...json(ref('BatchRequest')),
            [FILE_MEDIA_TYPES.ndjson]: { schema: { type: 'string' } },
            [FILE_MEDIA_TYPES.csv]: { schema: { type: 'string' } },
          },
        },
        responses: {
          ...submitted(
            'Batch',
            'Accepted: the batch and its jobs are stored (`job_ids` in order; not for a file).',
          ),
          ...submitErrors,
        },
      },
    },
    {
      // Counts per status, done, progress; `?wait=N` long-polls until done (or, with
      // If-None-Match, until anything changed).
      method: 'get',
      path: '/batches/:id',
      handle: [
        auth,
        async (ctx) => {
          const { wait = 0 } = parseWaitQuery(ctx.query);
          const watched = jobs.batch(clientOf(ctx).id, idOf(ctx));
          await answerGet(ctx, jobs, watched, batchResource, wait);
        },
      ],
      doc: {
        ...conditionalGet(
          'getBatch',
          'Progress of a batch; long-poll with ?wait',
          'Batch',
          'batch',
        ),
        tags: ['Batches'],
        description:
          'Counts per status, `finished`, `done` and `progress`. `?wait=N` holds the request up ' +
          'to N s until the batch is done; with `If-None-Match`, until anything changed.',
      },
    },
    {
      // One item per transaction in submission order, cursor-paginated; or, asked for NDJSON or
      // CSV, every item in one streamed file.
      method: 'get',
      path: '/batches/:id/results',
      handle: [
        auth,
        async (ctx, next) => {
          ctx.vary('Accept');
          const type = ctx.accepts(
            'application/json',
            FILE_MEDIA_TYPES.ndjson,
            FILE_MEDIA_TYPES.csv,
          );
          if (type !== FILE_MEDIA_TYPES.ndjson && type !== FILE_MEDIA_TYPES.csv) {
            await next();
            return;
          }
          if (Object.keys(ctx.query).length > 0) {
            throw new HttpProblem(
              400,
              PROBLEM_TYPES.invalidParameter,
              'Invalid query parameter',
              'A results file holds every item; `limit` and `cursor` are for JSON pages.',
              Object.keys(ctx.query).map((parameter) => ({
                parameter,
                detail: 'is not a parameter of a results file',
              })),
            );
          }
          const format = type === FILE_MEDIA_TYPES.csv ? 'csv' : 'ndjson';
          const { items } = await jobs.batchFileItems(clientOf(ctx).id, idOf(ctx));
          ctx.set('Cache-Control', 'no-store');
          ctx.type = resultsMediaType(format);
          ctx.body = resultsFile(items, format);
        },
        async (ctx) => {
          const { limit, cursor } = parsePageQuery(ctx.query);
          const afterIndex = cursor === undefined ? '-1' : cursors.decode('index', cursor);
          if (afterIndex === undefined) throw invalidCursor();
          const { batch, items } = await jobs.batchItems(clientOf(ctx).id, idOf(ctx), {
            afterIndex: Number(afterIndex),
            limit: limit + 1,
          });
          const page = items.slice(0, limit);
          const last = page.at(-1);
          const nextCursor =
            items.length > limit && last ? cursors.encode('index', last.batch_index) : null;
          if (nextCursor) {
            ctx.set(
              'Link',
              `<${batchLocation(batch.id)}/results?limit=${limit}&cursor=${nextCursor}>; rel="next"`,
            );
          }
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { items: page.map(batchItem), next_cursor: nextCursor };
        },
      ],
      doc: {
        operationId: 'getBatchResults',
        tags: ['Batches'],
        summary: 'One item per transaction, in submission order',
        description:
          "Each item: the transaction's index and `reference`, its job's id and status, and the " +
          '`result` or `error`; cursor pages (follow `Link` or pass `next_cursor`).',
        parameters: [idParameter('batch'), ...queryParameters(pageQuerySchema)],
        responses: {
          '200': {
            ...page('One page (JSON).', 'BatchResults'),
            description:
              'One page (JSON; `Link` to the next); or, with `Accept: application/x-ndjson` or ' +
              '`text/csv`, every item in one streamed file (NDJSON: one item per line; CSV: the ' +
              'transaction and its outcome per row).',
            content: {
              ...json(ref('BatchResults')),
              [FILE_MEDIA_TYPES.ndjson]: { schema: { type: 'string' } },
              [FILE_MEDIA_TYPES.csv]: { schema: { type: 'string' } },
            },
          },
          '404': problem('No such batch.'),
          '410': gone('batch'),
          ...common4xx,
        },
      },
    },
  ];
}
