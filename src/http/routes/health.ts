/**
 * Liveness and readiness, for orchestrators and load balancers; no API key needed.
 */
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import { open, problem } from '../openapi.js';
import type { Route } from '../route.js';

export interface HealthDeps {
  /** True once shutdown has begun: readiness fails so load balancers stop sending work. */
  isDraining: () => boolean;
  /** Whether the database answers with every migration this build knows applied. */
  checkDatabase: () => Promise<'ok' | 'unreachable' | 'migrations missing'>;
}

export function healthRoutes(deps: HealthDeps): Route[] {
  const unavailable = (detail: string) =>
    new HttpProblem(503, PROBLEM_TYPES.unavailable, 'Not Ready', detail, undefined, {
      'Retry-After': '5',
    });
  return [
    {
      // Liveness: the process answers. No dependencies checked, so a database outage does not
      // get every replica restarted.
      method: 'get',
      path: '/healthz',
      handle: [
        (ctx) => {
          ctx.body = { status: 'ok' };
        },
      ],
      doc: {
        ...open,
        operationId: 'liveness',
        summary: 'Liveness: the process answers',
        responses: { '200': { description: 'Alive.' } },
      },
    },
    {
      // Readiness: the database answers and every migration this build knows is applied.
      method: 'get',
      path: '/readyz',
      handle: [
        async (ctx) => {
          if (deps.isDraining()) throw unavailable('Shutting down.');
          const database = await deps.checkDatabase();
          if (database === 'unreachable') throw unavailable('The database is unreachable.');
          if (database === 'migrations missing') {
            throw unavailable('Database migrations are not applied.');
          }
          ctx.body = { status: 'ready', checks: { database: 'ok', migrations: 'ok' } };
        },
      ],
      doc: {
        ...open,
        operationId: 'readiness',
        summary: 'Readiness: database reachable, migrations applied',
        responses: { '200': { description: 'Ready.' }, '503': problem('Not ready.') },
      },
    },
  ];
}
