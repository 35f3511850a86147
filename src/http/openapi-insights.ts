/**
 * OpenAPI paths of what the dashboard reads (`GET /stats`, `GET /batches`); openapi.ts passes in
 * its helpers and spreads these into the document.
 */
import { statsQuerySchema } from './schemas-insights.js';
import { pageQuerySchema } from './schemas.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface OpenApiHelpers {
  ref: (name: string) => object;
  json: (schema: Json) => object;
  problem: (description: string) => object;
  queryParameters: (schema: { properties: Record<string, object> }) => object[];
  /** 400, 401 and 503. */
  common4xx: Record<string, object>;
}

export function insightPaths(h: OpenApiHelpers): Record<string, object> {
  return {
    '/stats': {
      get: {
        operationId: 'getStats',
        summary: 'Your jobs over a recent window: counts, throughput and latency',
        description:
          'What the dashboard charts. `counts` holds your jobs pending and running now, and ' +
          'those that succeeded, failed or were canceled within the window; `series` has one ' +
          'entry per bucket (oldest first, the last one still filling) with the jobs that ' +
          'finished in it and the time from submit to result (p50, p95, p99) of those that ' +
          'succeeded or failed.',
        parameters: h.queryParameters(statsQuerySchema),
        responses: {
          '200': { description: 'The window.', content: h.json(h.ref('Stats') as Json) },
          ...h.common4xx,
        },
      },
    },
    '/batches': {
      get: {
        operationId: 'listBatches',
        summary: 'Your batches, newest first, cursor-paginated',
        parameters: h.queryParameters(pageQuerySchema),
        responses: {
          '200': {
            description:
              'One page, each batch as `GET /batches/{id}` shows it; `Link: <…>; rel="next"` ' +
              'when there is another.',
            content: h.json(h.ref('BatchList') as Json),
          },
          ...h.common4xx,
        },
      },
    },
  };
}
