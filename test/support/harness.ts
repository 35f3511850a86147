import type { Knex } from 'knex';
import supertest from 'supertest';
import { Authenticator } from '../../src/auth/authenticator.js';
import { type IssuedKey, KEYS_REVOKED_CHANNEL, issueKey } from '../../src/auth/keys.js';
import { createApp } from '../../src/http/app.js';
import { type Heuristic, cacheKeyOf } from '../../src/heuristic/types.js';
import { Admission, type AdmissionOptions } from '../../src/jobs/admission.js';
import { QueueEstimator } from '../../src/jobs/eta.js';
import { JobEvents } from '../../src/jobs/events.js';
import { PgNotifier } from '../../src/jobs/notifier.js';
import { Runner, type RunnerOptions } from '../../src/jobs/runner.js';
import { AttemptStats } from '../../src/jobs/stats.js';
import { FINISHED_CHANNEL } from '../../src/jobs/store.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { freshDatabase, testDatabaseUrl } from './db.js';
import { tx } from './heuristics.js';

export interface Harness {
  db: Knex;
  runner: Runner;
  events: JobEvents;
  app: ReturnType<typeof createApp>;
  /** Requests as client "a" (its key set on every request). */
  http: supertest.Agent;
  /** Requests without a key. */
  anon: ReturnType<typeof supertest>;
  /** Client "a": what `http` sends. */
  key: IssuedKey;
  /** Requests with another key. */
  as(key: string): supertest.Agent;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  heuristic: Heuristic;
  runner?: Partial<Omit<RunnerOptions, 'db' | 'heuristic' | 'log' | 'stats'>>;
  /** Start the runner (claiming jobs). @defaultValue true */
  startRunner?: boolean;
  jobMaxAttempts?: number;
  /** Pool size of the app's and runner's knex. @defaultValue 10 */
  poolMax?: number;
  /** Pending-job caps. @defaultValue 100000 per client, 1000000 overall */
  quota?: Partial<AdmissionOptions>;
  /** Result-cache TTL. @defaultValue 1 h */
  cacheTtlMs?: number;
}

/**
 * The app and a runner in this process on a clean test database, with fast test settings; the
 * poll is an hour so that anything that happens quickly happened through a wake-up. "Job
 * finished" NOTIFYs reach long-poll waiters and the runner, and key revocations the key cache,
 * as in the service; the "pending" channel is not listened to, so only local submits wake the
 * runner. Client "a" and its key are made here.
 */
export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const db = await freshDatabase(opts.poolMax);
  const log = createLogger('silent');
  const stats = new AttemptStats();
  const events = new JobEvents();
  let busySlots = () => 0;
  const metrics = new Metrics({
    db,
    busySlots: () => busySlots(),
    concurrency: 4,
    waiters: () => events.size,
  });
  const runner = new Runner({
    metrics,
    db,
    heuristic: opts.heuristic,
    log,
    stats,
    concurrency: 4,
    leaseMs: 5000,
    timeoutMs: 5000,
    backoffBaseMs: 10,
    backoffMaxMs: 40,
    pollMs: 3_600_000,
    retentionMs: 7 * 24 * 3_600_000,
    purgeIntervalMs: 3_600_000,
    cacheTtlMs: opts.cacheTtlMs ?? 3_600_000,
    ...opts.runner,
  });
  busySlots = () => runner.busySlots;
  const auth = new Authenticator(db);
  const notifier = new PgNotifier({
    connectionString: testDatabaseUrl(),
    channels: {
      [FINISHED_CHANNEL]: (payload) => {
        events.publishFinished(payload);
        runner.onJobFinished(payload.split(' ')[0] ?? '');
      },
      [KEYS_REVOKED_CHANNEL]: (keyId) => auth.forget(keyId),
    },
    onReconnect: () => events.wakeAll(),
    log,
  });
  await notifier.start();
  if (opts.startRunner ?? true) runner.start();
  const estimator = new QueueEstimator(db, stats, 4);
  const app = createApp({
    db,
    log,
    auth,
    admission: new Admission(db, estimator, {
      clientMaxPending: 100_000,
      maxPending: 1_000_000,
      ...opts.quota,
    }),
    events,
    estimator,
    maxBodyBytes: 16 * 1024,
    maxBatchBodyBytes: 1024 * 1024,
    jobMaxAttempts: opts.jobMaxAttempts ?? 3,
    cacheKey: (t) => cacheKeyOf(opts.heuristic, t),
    onJobSubmitted: () => runner.wake(),
    isDraining: () => false,
    metrics,
  });
  const key = await issueKey(db, 'a');
  const callback = app.callback();
  const as = (apiKey: string) => supertest.agent(callback).set('Authorization', `Bearer ${apiKey}`);
  return {
    db,
    runner,
    events,
    app,
    http: as(key.key),
    anon: supertest(callback),
    key,
    as,
    async stop() {
      events.close();
      await runner.stop(0);
      await notifier.stop();
      await db.destroy();
    },
  };
}

/** Submits one transaction through the harness's HTTP API; expects 202; returns the job. */
export async function submitJob(h: Harness, description: string): Promise<{ id: string }> {
  const res = await h.http.post('/normalize_merchant').send(tx(description)).expect(202);
  return res.body as { id: string };
}
