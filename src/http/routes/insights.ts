/**
 * What the dashboard reads, for any key holder: `GET /stats` (counts, throughput and latency
 * over a recent window) and `GET /batches` (the client's batches, newest first). Both see only
 * the caller's own jobs and batches, like every other call.
 */
import type { Authenticator } from '../../auth/authenticator.js';
import type { BatchPosition } from '../../db/sql/batches.js';
import type { Jobs } from '../../jobs/usecases.js';
import { authenticate, clientOf } from '../middleware.js';
import { common4xx, json, page, queryParameters, ref } from '../openapi.js';
import type { Route } from '../route.js';
import { pageQuerySchema } from '../schemas.js';
import { STATS_WINDOWS, type StatsWindow, statsQuerySchema } from '../schemas-insights.js';
import { checkQuery, createAjv, invalidCursor, parsePageQuery } from '../validation.js';
import { batchResource } from '../views.js';

export interface InsightRoutesDeps {
  jobs: Jobs;
  auth: Authenticator;
}

const validateStatsQuery = createAjv({ coerceTypes: true }).compile<{ window: StatsWindow }>(
  statsQuerySchema,
);

/** Opaque `GET /batches` cursors: the position of the last batch of the previous page. */
const batchCursor = {
  encode: (p: BatchPosition) => Buffer.from(`batch:${p.createdUs}:${p.id}`).toString('base64url'),
  decode(cursor: string): BatchPosition | undefined {
    const m = /^batch:(\d{1,19}):([0-9a-f-]{36})$/.exec(
      Buffer.from(cursor, 'base64url').toString(),
    );
    return m ? { createdUs: m[1] ?? '', id: m[2] ?? '' } : undefined;
  },
};

export function insightRoutes(deps: InsightRoutesDeps): Route[] {
  const { jobs } = deps;
  const auth = authenticate(deps.auth);
  return [
    {
      // The caller's jobs over a window: counts now and per outcome, finished per bucket, latency.
      method: 'get',
      path: '/stats',
      handle: [
        auth,
        async (ctx) => {
          const { window } = checkQuery(validateStatsQuery, ctx.query);
          const { bucketSeconds, buckets } = STATS_WINDOWS[window];
          const a = await jobs.activity(clientOf(ctx).id, { bucketSeconds, buckets });
          ctx.set('Cache-Control', 'no-store');
          ctx.body = {
            window,
            bucket_seconds: bucketSeconds,
            from: a.from.toISOString(),
            to: a.to.toISOString(),
            counts: {
              pending: a.pending,
              running: a.running,
              succeeded: a.succeeded,
              failed: a.failed,
              canceled: a.canceled,
            },
            latency_ms: a.latencyMs,
            series: a.buckets.map((b) => ({
              start: b.start.toISOString(),
              succeeded: b.succeeded,
              failed: b.failed,
              canceled: b.canceled,
              latency_ms: b.latencyMs,
            })),
          };
        },
      ],
      doc: {
        operationId: 'getStats',
        tags: ['Stats'],
        summary: 'Your jobs over a recent window: counts, throughput and latency',
        description:
          'What the dashboard charts. `counts` holds your jobs pending and running now, and ' +
          'those that succeeded, failed or were canceled within the window; `series` has one ' +
          'entry per bucket (oldest first, the last one still filling) with the jobs that ' +
          'finished in it and the time from submit to result (p50, p95, p99) of those that ' +
          'succeeded or failed.',
        parameters: queryParameters(statsQuerySchema),
        responses: {
          '200': { description: 'The window.', content: json(ref('Stats')) },
          ...common4xx,
        },
      },
    },
    {
      // The caller's batches, newest first, cursor-paginated, each as `GET /batches/{id}` shows it.
      method: 'get',
      path: '/batches',
      handle: [
        auth,
        async (ctx) => {
          const { limit, cursor } = parsePageQuery(ctx.query);
          const after = cursor === undefined ? undefined : batchCursor.decode(cursor);
          if (cursor !== undefined && after === undefined) throw invalidCursor();
          const rows = await jobs.listBatches(clientOf(ctx).id, { after, limit: limit + 1 });
          const page = rows.slice(0, limit);
          const last = page.at(-1);
          const nextCursor = rows.length > limit && last ? batchCursor.encode(last.position) : null;
          if (nextCursor) {
            ctx.set('Link', `</batches?limit=${limit}&cursor=${nextCursor}>; rel="next"`);
          }
          ctx.set('Cache-Control', 'no-store');
          ctx.body = { batches: page.map(batchResource), next_cursor: nextCursor };
        },
      ],
      doc: {
        operationId: 'listBatches',
        tags: ['Batches'],
        summary: 'Your batches, newest first, cursor-paginated',
        description:
          "Each batch as `GET /batches/{id}` shows it. Pass a page's `next_cursor` as `cursor` " +
          'for the next page (or follow `Link`).',
        parameters: queryParameters(pageQuerySchema),
        responses: {
          '200': page(
            'One page, each batch as `GET /batches/{id}` shows it; `Link: <…>; rel="next"` ' +
              'when there is another.',
            'BatchList',
          ),
          ...common4xx,
        },
      },
    },
  ];
}
