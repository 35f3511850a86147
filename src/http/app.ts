/**
 * The Koa application: request context (ids, logs, problem+json), security headers, and the
 * routes, mounted from the same list the OpenAPI document is built from. The caller binds the
 * port (tests use `app.callback()`).
 */
import Koa from 'koa';
import type { Authenticator } from '../auth/authenticator.js';
import type { Jobs } from '../jobs/usecases.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { EventStreams } from '../push/stream.js';
import { VERSION } from '../version.js';
import { corsFor } from './cors.js';
import { requestContext } from './middleware.js';
import { openApiDocument } from './openapi.js';
import { type Route, mount } from './route.js';
import { batchRoutes } from './routes/batches.js';
import { docsRoutes } from './routes/docs.js';
import { eventRoutes } from './routes/events.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { type HealthDeps, healthRoutes } from './routes/health.js';
import { insightRoutes } from './routes/insights.js';
import { jobRoutes } from './routes/jobs.js';
import { metricsRoutes } from './routes/metrics.js';
import { type WebhookRoutesDeps, webhookRoutes } from './routes/webhooks.js';

export interface AppDeps extends HealthDeps {
  log: Logger;
  /** The use-cases behind every job and batch route. */
  jobs: Jobs;
  /** API keys: every call about jobs and batches needs one. */
  auth: Authenticator;
  maxBodyBytes: number;
  maxBatchBodyBytes: number;
  /** Prometheus metrics; without them there is no /metrics route. */
  metrics?: Metrics;
  /** When set, /metrics needs `Authorization: Bearer <metricsToken>` (METRICS_TOKEN). */
  metricsToken?: string;
  /** Origins allowed to call from a browser (CORS_ORIGINS); none: no CORS headers. */
  corsOrigins?: readonly string[];
  /** Webhooks and the event stream; without them there are no /webhooks and /events routes. */
  push?: WebhookRoutesDeps['push'] & { streams: EventStreams };
}

/** Headers on every answer: an API that serves JSON has nothing to frame, embed or refer. */
const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Opener-Policy': 'same-origin',
};

/** Every route the service serves, documented or not. */
export function appRoutes(deps: AppDeps): Route[] {
  const api: Route[] = [
    ...healthRoutes(deps),
    ...jobRoutes(deps),
    ...batchRoutes(deps),
    ...insightRoutes(deps),
    ...(deps.metrics ? metricsRoutes(deps.metrics, deps.metricsToken) : []),
    ...(deps.push
      ? [
          ...webhookRoutes({ ...deps, push: deps.push }),
          ...eventRoutes({ ...deps, push: deps.push }),
        ]
      : []),
  ];
  let document: unknown;
  const describe = () => (document ??= openApiDocument(VERSION, api));
  return [...api, ...docsRoutes(describe), ...dashboardRoutes()];
}

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
    // The docs page replaces the Content-Security-Policy with one that lets it load its assets.
    ctx.set(SECURITY_HEADERS);
    if (deps.isDraining()) ctx.set('Connection', 'close');
    await next();
  });
  const cors = corsFor(deps.corsOrigins ?? []);
  if (cors) app.use(cors);
  const router = mount(appRoutes(deps));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
