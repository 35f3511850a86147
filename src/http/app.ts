import Router from '@koa/router';
import Koa from 'koa';
import type { Knex } from 'knex';
import type { QueueEstimator } from '../jobs/eta.js';
import type { JobEvents } from '../jobs/events.js';
import type { Logger } from '../log.js';
import { requestContext } from './middleware.js';
import { batchRoutes } from './routes/batches.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';

export interface AppDeps {
  db: Knex;
  log: Logger;
  /** "Job finished" events, fed by LISTEN: what long-poll requests wait on. */
  events: JobEvents;
  estimator: QueueEstimator;
  maxBodyBytes: number;
  maxBatchBodyBytes: number;
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
    if (deps.isDraining()) ctx.set('Connection', 'close');
    await next();
  });
  const router = new Router();
  router.use(
    healthRoutes(deps).routes(),
    jobRoutes(deps).routes(),
    batchRoutes(deps).routes(),
    docsRoutes().routes(),
  );
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
