import Router from '@koa/router';
import type { Knex } from 'knex';
import { migrationsApplied } from '../../db/knex.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';

export interface HealthDeps {
  db: Knex;
  /** True once shutdown has begun: readiness fails so load balancers stop sending work. */
  isDraining: () => boolean;
}

export function healthRoutes(deps: HealthDeps): Router {
  const router = new Router();

  // Liveness: the process answers. No dependencies checked, so a database outage does not
  // get every replica restarted.
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });

  // Readiness: the database answers and every migration this build knows is applied.
  router.get('/readyz', async (ctx) => {
    const unavailable = (detail: string) =>
      new HttpProblem(503, PROBLEM_TYPES.unavailable, 'Not Ready', detail, undefined, {
        'Retry-After': '5',
      });
    if (deps.isDraining()) throw unavailable('Shutting down.');
    let ready: boolean;
    try {
      ready = await migrationsApplied(deps.db);
    } catch {
      throw unavailable('The database is unreachable.');
    }
    if (!ready) throw unavailable('Database migrations are not applied.');
    ctx.body = { status: 'ready', checks: { database: 'ok', migrations: 'ok' } };
  });

  return router;
}
