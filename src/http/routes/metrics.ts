/**
 * Prometheus metrics in the text exposition format.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metrics } from '../../metrics.js';
import { open, problem } from '../openapi.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import type { Route } from '../route.js';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** `metricsToken`: when set, /metrics needs `Authorization: Bearer <token>` (METRICS_TOKEN). */
export function metricsRoutes(metrics: Metrics, metricsToken?: string): Route[] {
  const token = metricsToken === undefined ? undefined : digest(metricsToken);
  return [
    {
      method: 'get',
      path: '/metrics',
      handle: [
        async (ctx) => {
          if (token) {
            const sent = /^Bearer[ ]+(\S+)\s*$/i.exec(ctx.get('Authorization'))?.[1] ?? '';
            // Compared as digests, in constant time: the token's length is not given away.
            if (!timingSafeEqual(digest(sent), token)) {
              throw new HttpProblem(
                401,
                PROBLEM_TYPES.unauthorized,
                'Unauthorized',
                'GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>".',
                undefined,
                { 'WWW-Authenticate': 'Bearer realm="merchant-normalizer-metrics"' },
              );
            }
          }
          ctx.set('Cache-Control', 'no-store');
          ctx.type = metrics.registry.contentType;
          ctx.body = await metrics.registry.metrics();
        },
      ],
      doc: {
        ...open,
        operationId: 'metrics',
        tags: ['Operations'],
        summary: 'Prometheus metrics (text format); counters are per process',
        description:
          'Open unless the service sets METRICS_TOKEN; then it needs that bearer token (not an ' +
          'API key).',
        responses: {
          '200': {
            description: 'The metrics.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          '401': problem(
            'METRICS_TOKEN is set and the request does not carry it ' +
              '(`WWW-Authenticate: Bearer realm="merchant-normalizer-metrics"`).',
            'WWW-Authenticate',
          ),
        },
      },
    },
  ];
}
