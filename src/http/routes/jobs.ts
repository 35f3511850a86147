import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import { koaBody } from 'koa-body';
import type { Knex } from 'knex';
import { TERMINAL_STATUSES, getJob, insertJob } from '../../jobs/store.js';
import type { AttemptStats } from '../../jobs/stats.js';
import { requireJson } from '../middleware.js';
import { notFound } from '../problem.js';
import { parseTransaction } from '../validation.js';
import { jobLocation, jobResource } from '../views.js';

export interface JobRoutesDeps {
  db: Knex;
  stats: AttemptStats;
  maxBodyBytes: number;
  jobMaxAttempts: number;
  /** Called after a job is committed, so the local runner claims it at once. */
  onJobSubmitted: () => void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function jobRoutes(deps: JobRoutesDeps): Router {
  const router = new Router();
  const parseJson = koaBody({
    json: true,
    jsonLimit: deps.maxBodyBytes,
    jsonStrict: false,
    urlencoded: false,
    text: false,
    multipart: false,
  });

  // Accept one transaction: 202 once its pending job row is committed.
  router.post('/normalize_merchant', requireJson, parseJson, async (ctx) => {
    const transaction = parseTransaction(ctx.request.body);
    const row = await insertJob(deps.db, {
      id: randomUUID(),
      transaction,
      maxAttempts: deps.jobMaxAttempts,
    });
    deps.onJobSubmitted();
    ctx.status = 202;
    ctx.set('Location', jobLocation(row.id));
    ctx.set('Retry-After', String(deps.stats.retryAfterSeconds(row.status, row.started_at)));
    ctx.body = jobResource(row);
  });

  // One job; Retry-After tells a poller when to look again while it is not finished.
  router.get('/jobs/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    const row = UUID.test(id) ? await getJob(deps.db, id.toLowerCase()) : undefined;
    if (!row) throw notFound(`No job with id "${id}".`);
    if (!TERMINAL_STATUSES.includes(row.status)) {
      ctx.set('Retry-After', String(deps.stats.retryAfterSeconds(row.status, row.started_at)));
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = jobResource(row);
  });

  return router;
}
