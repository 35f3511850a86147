import Router from '@koa/router';
import { newId } from '../../ids.js';
import { batchTopic } from '../../jobs/events.js';
import { type BatchRow, getBatch, getBatchItems, insertBatch } from '../../jobs/store.js';
import { checkReplay, idempotencyOf } from '../idempotency.js';
import { authenticate, clientOf, requireJson } from '../middleware.js';
import { missing as missingOf } from '../gone.js';
import { type ResourceKind, answerGet, answerSubmit } from '../respond.js';
import { invalidCursor, parseBatch, parsePageQuery, parseWaitQuery } from '../validation.js';
import {
  type BatchResource,
  batchDone,
  batchItem,
  batchLocation,
  batchResource,
  cursors,
} from '../views.js';
import { byUuid, jsonBody } from './jobs.js';
import type { AppDeps, ResourceRouteDeps } from '../app.js';

export type BatchRoutesDeps = ResourceRouteDeps & Pick<AppDeps, 'maxBatchBodyBytes'>;

export function batchRoutes(deps: BatchRoutesDeps): Router {
  const router = new Router();

  const auth = authenticate(deps.auth);
  // Another client's batch is "not found", exactly like a batch that does not exist.
  const batchKind = (id: string, owner: string): ResourceKind<BatchRow, BatchResource> => ({
    events: deps.events,
    topic: batchTopic(id),
    load: () => byUuid(id, (uuid) => getBatch(deps.db, uuid, owner)),
    view: batchResource,
    isFinal: batchDone,
    retryAfter: (row) => deps.estimator.forBatch(row),
    retryAfterSubmitted: (row) => deps.estimator.forSubmitted(row.pending),
  });
  // 404, or 410 for an id older than the retention period.
  const missing = (id: string) => () => missingOf('batch', id, deps.jobRetentionMs);

  // Accept 1..1000 transactions at once, all or nothing: 202 once the batch and its jobs are
  // committed, with the job ids in submission order.
  router.post(
    '/normalize_merchant/batch',
    auth,
    requireJson,
    jsonBody(deps.maxBatchBodyBytes),
    async (ctx) => {
      const client = clientOf(ctx);
      const { transactions } = parseBatch(ctx.request.body);
      const idempotency = idempotencyOf(ctx, { transactions });
      const n = transactions.length;
      const inserted = await deps.admission.admitting(
        client.id,
        n,
        () =>
          insertBatch(deps.db, {
            id: newId(),
            clientId: client.id,
            transactions,
            maxAttempts: deps.jobMaxAttempts,
            idempotency,
            cacheKeys: transactions.map(deps.cacheKey),
          }),
        (r) => (r.created ? (r.row?.pending ?? 0) : 0),
      );
      if (inserted.created) {
        deps.metrics?.jobsSubmitted.inc({ via: 'batch' }, n);
        // Answered from the result cache, those never queued.
        const cached = inserted.row?.succeeded ?? 0;
        deps.metrics?.answeredWithoutCall('submit', cached);
        if (cached < n) deps.onJobSubmitted();
      } else if (idempotency) checkReplay(ctx, idempotency, inserted.requestHash, 'batch');
      const kind = batchKind(inserted.id, client.id);
      // A new batch is known from its insert; only a replay needs reading.
      const row = inserted.row ?? (await kind.load());
      if (!row) throw missing(inserted.id)(); // purged the same instant: nothing to show
      await answerSubmit(ctx, kind, row, batchLocation(row.id), (view) => ({
        ...view,
        job_ids: inserted.jobIds,
      }));
    },
  );

  // Counts per status, done, progress; `?wait=N` long-polls until done (or, with
  // If-None-Match, until anything changed).
  router.get('/batches/:id', auth, async (ctx) => {
    const { wait = 0 } = parseWaitQuery(ctx.query);
    const id = ctx.params.id ?? '';
    await answerGet(ctx, batchKind(id, clientOf(ctx).id), wait, missing(id));
  });

  // One item per transaction in submission order, cursor-paginated.
  router.get('/batches/:id/results', auth, async (ctx) => {
    const { limit, cursor } = parsePageQuery(ctx.query);
    const afterIndex = cursor === undefined ? '-1' : cursors.decode('index', cursor);
    if (afterIndex === undefined) throw invalidCursor();
    const id = ctx.params.id ?? '';
    const owner = clientOf(ctx).id;
    const batch = await batchKind(id, owner).load();
    if (!batch) throw missing(id)();
    const rows = await getBatchItems(deps.db, {
      batchId: batch.id,
      owner,
      afterIndex: Number(afterIndex),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    const nextCursor =
      rows.length > limit && last ? cursors.encode('index', last.batch_index) : null;
    if (nextCursor) {
      ctx.set(
        'Link',
        `<${batchLocation(batch.id)}/results?limit=${limit}&cursor=${nextCursor}>; rel="next"`,
      );
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { items: page.map(batchItem), next_cursor: nextCursor };
  });

  return router;
}
