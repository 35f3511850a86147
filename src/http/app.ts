import Router from '@koa/router';
import Koa from 'koa';
import type { Knex } from 'knex';
import type { Authenticator } from '../auth/authenticator.js';
import type { Transaction } from '../heuristic/types.js';
import type { Admission } from '../jobs/admission.js';
import type { QueueEstimator } from '../jobs/eta.js';
import type { JobEvents } from '../jobs/events.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { corsFor } from './cors.js';
import { requestContext } from './middleware.js';
import { batchRoutes } from './routes/batches.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { insightRoutes } from './routes/insights.js';
import { jobRoutes } from './routes/jobs.js';

export interface AppDeps {
  db: Knex;
  log: Logger;
  /** API keys: every call about jobs and batches needs one. */
  auth: Authenticator;
  /** Pending-job caps, per client and overall. */
  admission: Admission;
  /** "Job finished" events, fed by LISTEN: what long-poll requests wait on. */
  events: JobEvents;
  estimator: QueueEstimator;
  maxBodyBytes: number;
  maxBatchBodyBytes: number;
  jobMaxAttempts: number;
  /** How long finished jobs are kept: an older id that is missing is `410 Gone`. */
  jobRetentionMs: number;
  /** The result-cache key of a transaction ("version:key"), or null: not cacheable. */
  cacheKey: (tx: Transaction) => string | null;
  onJobSubmitted: () => void;
  isDraining: () => boolean;
  /** Prometheus metrics; without them there is no /metrics route. */
  metrics?: Metrics;
  /** Origins allowed to call from a browser (CORS_ORIGINS); none: no CORS headers. */
  corsOrigins?: readonly string[];
}

/** What the job and batch routes use. */
export type ResourceRouteDeps = Pick<
  AppDeps,
  | 'db'
  | 'auth'
  | 'admission'
  | 'events'
  | 'estimator'
  | 'jobMaxAttempts'
  | 'jobRetentionMs'
  | 'cacheKey'
  | 'onJobSubmitted'
  | 'metrics'
>;

/** Headers on every answer: an API that serves JSON has nothing to frame, embed or refer. */
const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Opener-Policy': 'same-origin',
};

/** The Koa application; the caller binds the port (tests use `app.callback()`). */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  // Every error is rendered and logged by requestContext; keep Koa's own stderr printer quiet.
  app.silent = true;
  app.use(
    requestContext(deps.log, (line) =>
      deps.metrics?.httpSeconds.observe(
        { method: line.method, route: line.route, status: String(line.status) },
        line.durationMs / 1000,
      ),
    ),
  );
  app.use(async (ctx, next) => {
    // The docs page and the dashboard replace the Content-Security-Policy with their own.
    ctx.set(SECURITY_HEADERS);
    if (deps.isDraining()) ctx.set('Connection', 'close');
    await next();
  });
  const cors = corsFor(deps.corsOrigins ?? []);
  if (cors) app.use(cors);
  const router = new Router();
  router.use(
    healthRoutes(deps).routes(),
    jobRoutes(deps).routes(),
    batchRoutes(deps).routes(),
    insightRoutes(deps).routes(),
    docsRoutes().routes(),
    dashboardRoutes().routes(),
  );
  const metrics = deps.metrics;
  if (metrics) {
    router.get('/metrics', async (ctx) => {
      ctx.set('Cache-Control', 'no-store');
      ctx.type = metrics.registry.contentType;
      ctx.body = await metrics.registry.metrics();
    });
  }
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
