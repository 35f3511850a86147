/**
 * Prometheus metrics in the text exposition format.
 */
import type { Metrics } from '../../metrics.js';
import { open } from '../openapi.js';
import type { Route } from '../route.js';

export function metricsRoutes(metrics: Metrics): Route[] {
  return [
    {
      method: 'get',
      path: '/metrics',
      handle: [
        async (ctx) => {
          ctx.set('Cache-Control', 'no-store');
          ctx.type = metrics.registry.contentType;
          ctx.body = await metrics.registry.metrics();
        },
      ],
      doc: {
        ...open,
        operationId: 'metrics',
        summary: 'Prometheus metrics (text format); counters are per process',
        responses: {
          '200': {
            description: 'The metrics.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      },
    },
  ];
}
