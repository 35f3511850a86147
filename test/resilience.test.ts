import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import supertest from 'supertest';
import { createKnex } from '../src/db/knex.js';
import { createApp } from '../src/http/app.js';
import { PgNotifier } from '../src/jobs/notifier.js';
import { Authenticator } from '../src/auth/authenticator.js';
import { Admission } from '../src/jobs/admission.js';
import { QueueEstimator } from '../src/jobs/eta.js';
import { JobEvents } from '../src/jobs/events.js';
import { AttemptStats } from '../src/jobs/stats.js';
import * as store from '../src/jobs/store.js';
import { createLogger } from '../src/log.js';
import { expectProblem } from './support/problem.js';
import { eventually, freshDatabase, insertPending, testDatabaseUrl } from './support/db.js';

describe('PgNotifier', () => {
  it('reconnects after its connection is killed, and wakes the runner to catch up', async () => {
    const db = await freshDatabase();
    let wakes = 0;
    const notifier = new PgNotifier({
      connectionString: testDatabaseUrl(),
      channels: { [store.PENDING_CHANNEL]: () => (wakes += 1) },
      onReconnect: () => (wakes += 1),
      log: createLogger('silent'),
    });
    await notifier.start();
    try {
      await insertPending(db, 'a');
      await eventually(async () => wakes === 1, 3000, 'the first NOTIFY');

      const killed = await db.raw<{ rows: unknown[] }>(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'merchant-normalizer-listener' AND pid <> pg_backend_pid()`,
      );
      expect(killed.rows).to.have.length(1);
      // The reconnect itself wakes the runner: notifications sent meanwhile were lost.
      await eventually(async () => wakes === 2, 5000, 'the wake-up after reconnecting');

      await sleep(100);
      await insertPending(db, 'b');
      await eventually(async () => wakes === 3, 3000, 'a NOTIFY on the new connection');
    } finally {
      await notifier.stop();
      await db.destroy();
    }
  });
});

describe('POST /normalize_merchant with the database down', () => {
  it('answers 503 problem+json with Retry-After, not 500', async () => {
    // Nothing listens on port 1: every query fails to connect.
    const db = createKnex('postgres://postgres@127.0.0.1:1/none', 2, createLogger('silent'));
    const estimator = new QueueEstimator(db, new AttemptStats(), 4);
    const app = createApp({
      db,
      log: createLogger('silent'),
      auth: new Authenticator(db),
      admission: new Admission(db, estimator, { clientMaxPending: 10, maxPending: 10 }),
      events: new JobEvents(),
      estimator,
      maxBodyBytes: 16 * 1024,
      maxBatchBodyBytes: 1024 * 1024,
      jobMaxAttempts: 3,
      cacheKey: () => null,
      onJobSubmitted: () => undefined,
      isDraining: () => false,
    });
    try {
      // A well-formed key: checking it needs the database, which is down.
      const res = await supertest(app.callback())
        .post('/normalize_merchant')
        .set('Authorization', `Bearer mn_0123456789ab_${'k'.repeat(43)}`)
        .send({ date: '2026-04-03', description: 'Netflix', amount: 1 })
        .expect(503);
      expectProblem(res, '/problems/service-unavailable', 503);
      expect(res.headers['retry-after']).to.equal('5');
      expect(res.body.detail).to.contain('nothing was stored');

      const ready = await supertest(app.callback()).get('/readyz').expect(503);
      expect(ready.body.detail).to.contain('unreachable');
    } finally {
      await db.destroy();
    }
  });
});
