import Router from '@koa/router';
import Koa from 'koa';
import type { Knex } from 'knex';
import type { AttemptStats } from '../jobs/stats.js';
import type { Logger } from '../log.js';
import { requestContext } from './middleware.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';

export interface AppDeps {
  db: Knex;
  log: Logger;
  stats: AttemptStats;
  maxBodyBytes: number;
  jobMaxAttempts: number;
  onJobSubmitted: () => void;
  isDraining: () => boolean;
}

/** The Koa application; the caller binds the port (tests use `app.callback()`). */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  // Every error is rendered and logged by requestContext; keep Koa's own stderr printer quiet.
  app.silent = true;
  app.use(requestContext(deps.log));
  app.use(async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    await next();
  });
  const router = new Router();
  router.use(healthRoutes(deps).routes(), jobRoutes(deps).routes());
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
