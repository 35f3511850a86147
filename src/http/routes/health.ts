import Router from '@koa/router';
import type { Knex } from 'knex';
import { migrationsApplied } from '../../db/knex.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';

export interface HealthDeps {
  db: Knex;
  /** True once shutdown has begun: readiness fails so load balancers stop sending work. */
  isDraining: () => boolean;
}

/** `/readyz` answers within this, even when the database does not (load balancers give up). */
export const READINESS_TIMEOUT_MS = 1500;

export function healthRoutes(deps: HealthDeps): Router {
  const router = new Router();

  // One check at a time: probes arriving while one runs share its answer, so a stalled
  // database does not collect a pool connection per probe.
  let checking: Promise<boolean> | undefined;
  const check = () => {
    checking ??= migrationsApplied(deps.db).finally(() => (checking = undefined));
    return checking;
  };

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
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)),
        READINESS_TIMEOUT_MS,
      );
    });
    try {
      ready = await Promise.race([check(), timedOut]);
    } catch {
      throw unavailable('The database is unreachable (or did not answer in time).');
    } finally {
      clearTimeout(timer);
    }
    if (!ready) throw unavailable('Database migrations are not applied.');
    ctx.body = { status: 'ready', checks: { database: 'ok', migrations: 'ok' } };
  });

  return router;
}
