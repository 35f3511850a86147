/**
 * The one wiring of the service, used by `src/main.ts` and by the tests: database (embedded or
 * DATABASE_URL), migrations, store, runner, the event feed on LISTEN, use-cases, HTTP app and
 * server; and taking them apart again in the right order on shutdown. Tests pass a config of
 * their own and a heuristic, and may leave the port unbound (driving `app.callback()`) or the
 * runner unstarted; nothing else differs.
 */
import type http from 'node:http';
import type Koa from 'koa';
import type { Knex } from 'knex';
import { Authenticator } from './auth/authenticator.js';
import { ensureLocalKey } from './auth/local-key.js';
import type { Config } from './config.js';
import {
  EVENTS_CHANNEL,
  KEYS_REVOKED_CHANNEL,
  PENDING_CHANNEL,
  WEBHOOKS_CHANNEL,
} from './db/channels.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './db/embedded.js';
import { createKnex, migrateLatest, migrationState, waitForDatabase } from './db/knex.js';
import { PgNotifier } from './db/notifier.js';
import { createStore } from './db/store.js';
import { createHeuristic } from './heuristic/factory.js';
import type { Heuristic } from './heuristic/types.js';
import { createApp } from './http/app.js';
import { close, listen } from './http/server.js';
import { Admission } from './jobs/admission.js';
import { scopedCacheKey } from './jobs/cache-scope.js';
import { QueueEstimator } from './jobs/eta.js';
import { EventFeed } from './jobs/events.js';
import { announceEvents } from './db/sql/events.js';
import { JobEvents } from './jobs/hub.js';
import { Jobs } from './jobs/usecases.js';
import { type Logger, createLogger } from './log.js';
import { Metrics } from './metrics.js';
import { Push } from './push/push.js';
import { PendingAnnouncer } from './runner/announce.js';
import { Runner } from './runner/runner.js';
import { AttemptStats } from './runner/stats.js';

export interface ServiceOptions {
  /** @defaultValue a JSON logger at `config.logLevel` */
  log?: Logger;
  /** The heuristic behind the runner. @defaultValue the one HEURISTIC picks (mock or http) */
  heuristic?: Heuristic;
  /** Bind `config.host:config.port`; without it, drive `app.callback()`. @defaultValue true */
  listen?: boolean;
  /** Start claiming jobs at once; otherwise call `runner.start()`. @defaultValue true */
  startRunner?: boolean;
  /** Randomness of the retry jitter. @defaultValue Math.random */
  random?: () => number;
}

export interface Service {
  /** Base URL the HTTP server listens on (`undefined` when started without `listen`). */
  readonly url: string | undefined;
  readonly app: Koa;
  /** The service's own pool. */
  readonly db: Knex;
  readonly runner: Runner;
  /** Long-poll waiters (the hub the event feed wakes). */
  readonly events: JobEvents;
  /** The event log as this process hears it. */
  readonly feed: EventFeed;
  readonly metrics: Metrics;
  /** Webhooks and event streams. */
  readonly push: Push;
  /** Graceful: stop accepting, finish or hand back running attempts, close everything. */
  stop(): Promise<void>;
}

export async function startService(
  config: Readonly<Config>,
  options: ServiceOptions = {},
): Promise<Service> {
  const log = options.log ?? createLogger(config.logLevel);
  const heuristics = createHeuristic(config, log, options.heuristic);
  const heuristic = heuristics.heuristic;
  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.embeddedPgPort,
      log,
    });
    databaseUrl = embedded.url;
    log.info({ databaseUrl, dataDir: config.dataDir }, 'embedded Postgres started');
  }

  // Every statement of the service's pool is bounded (statement and query timeouts, a short
  // wait for a connection), so a stalled database answers requests with 503, not a hang.
  const db = createKnex(databaseUrl, config.databasePoolMax, log, {
    statementMs: config.databaseStatementTimeoutMs,
    acquireMs: config.databaseAcquireTimeoutMs,
  });
  const events = new JobEvents();
  let runner: Runner | undefined;
  let push: Push | undefined;
  let notifier: PgNotifier | undefined;
  let server: http.Server | undefined;
  let draining = false;

  const teardown = async () => {
    draining = true;
    // Long-poll requests answer now with what they have, so closing the server does not wait
    // up to a minute for them.
    events.close();
    push?.closeStreams();
    if (server) await close(server);
    await runner?.stop(config.shutdownGraceMs);
    await push?.stop(config.shutdownGraceMs);
    await heuristics.close();
    await notifier?.stop();
    feed.stop();
    await feed.idle();
    await db.destroy();
    await embedded?.stop();
  };
  const feed = new EventFeed(db, log, (payload) => announceEvents(db, payload));

  try {
    // Start-up waits for a database that is not up yet (compose, a restart) rather than exit.
    // Migrations run on a pool of their own without statement timeouts: an index build may
    // take minutes, and they queue behind another process's migrations.
    const migrator = createKnex(databaseUrl, 2, log, {
      acquireMs: config.databaseAcquireTimeoutMs,
    });
    try {
      await waitForDatabase(migrator, { waitMs: config.databaseStartupWaitMs, log });
      const applied = await migrateLatest(migrator, log);
      if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
    } finally {
      await migrator.destroy();
    }
    // Zero setup: the embedded database comes with a key; a shared one gets keys from the CLI.
    if (embedded) await ensureLocalKey(db, config.dataDir, log);
    const auth = new Authenticator(db, { failuresPerMinute: config.authFailuresPerMinute });

    const stats = new AttemptStats();
    let busySlots = () => 0;
    const metrics = new Metrics({
      db,
      busySlots: () => busySlots(),
      concurrency: config.runnerConcurrency,
      waiters: () => events.size,
      queueRefreshMs: config.metricsQueueRefreshMs,
    });
    heuristics.registerMetrics(metrics.registry);
    const store = createStore(db, {
      onAppended: (appended) => {
        metrics.eventsAppended(appended.counts);
        feed.appended(appended);
      },
      onSubmitGroupSplit: (err, jobs) => {
        metrics.groupSplit('submits');
        log.warn({ err, jobs }, 'a grouped insert of submits failed; writing its jobs one by one');
      },
    });
    const jobRunner = new Runner({
      store: store.runner,
      heuristic,
      log,
      stats,
      metrics,
      concurrency: config.runnerConcurrency,
      leaseMs: config.jobLeaseMs,
      timeoutMs: config.jobTimeoutMs,
      backoffBaseMs: config.jobBackoffBaseMs,
      backoffMaxMs: config.jobBackoffMaxMs,
      pollMs: config.runnerPollMs,
      retentionMs: config.jobRetentionMs,
      purgeIntervalMs: config.purgeIntervalMs,
      cacheTtlMs: config.resultCacheTtlMs,
      random: options.random,
    });
    runner = jobRunner;
    busySlots = () => jobRunner.busySlots;
    const wake = () => jobRunner.wake();
    // Other processes' runners hear of submits by a NOTIFY sent after the commit (announce.ts).
    const announcer = new PendingAnnouncer(
      feed.origin,
      (origin) => store.announcePending(origin),
      log,
    );

    // What the event log tells this process: waiters wake, canceled attempts abort.
    feed.subscribe((appended) => {
      for (const event of appended) {
        events.publish(event.job_id, event.batch_id);
        if (event.type === 'job.canceled' && event.job_id) jobRunner.onJobFinished(event.job_id);
      }
    });
    feed.onCatchUp(() => {
      wake();
      events.wakeAll();
      auth.forgetAll();
    });
    // Push delivery: the fan-out and the event streams read the log too.
    const pushing = new Push({
      db,
      log,
      config,
      registry: metrics.registry,
      random: options.random,
    });
    push = pushing;
    feed.subscribe((appended) => pushing.heard(appended));
    feed.onCatchUp(() => pushing.caughtUp());
    notifier = new PgNotifier({
      connectionString: databaseUrl,
      connectTimeoutMs: config.databaseAcquireTimeoutMs,
      channels: {
        [PENDING_CHANNEL]: (payload) => {
          if (announcer.isOwn(payload)) return;
          // A submit's announcement names its process (an empty payload may be this one's).
          if (payload) feed.heardFrom(payload);
          wake();
        },
        [EVENTS_CHANNEL]: (payload) => feed.notified(payload),
        [KEYS_REVOKED_CHANNEL]: (keyId) => auth.forget(keyId),
        [WEBHOOKS_CHANNEL]: (payload) => pushing.notified(payload),
      },
      onReconnect: () => feed.caughtUp(),
      log,
    });
    await notifier.start();
    feed.start();
    if (options.startRunner ?? true) jobRunner.start();
    await pushing.start();

    const estimator = new QueueEstimator(store, stats, config.runnerConcurrency);
    const jobs = new Jobs({
      store,
      admission: new Admission(store, estimator, {
        clientMaxPending: config.clientMaxPending,
        maxPending: config.maxPendingJobs,
      }),
      estimator,
      events,
      jobMaxAttempts: config.jobMaxAttempts,
      jobRetentionMs: config.jobRetentionMs,
      cacheKey: (tx, clientId) =>
        config.resultCacheTtlMs > 0
          ? scopedCacheKey(config.resultCacheScope, heuristic, tx, clientId)
          : null,
      onJobSubmitted: (pending) => {
        jobRunner.queued(pending);
        // Alone, the local runner is all there is to tell.
        if (feed.othersListening()) announcer.announce();
      },
      reserveSlot: () => jobRunner.reserve(),
      // Each file batch holds a connection while it is uploaded: at most half the pool.
      maxFileBatchesInFlight: Math.max(1, Math.floor(config.databasePoolMax / 2)),
      metrics,
    });
    const app = createApp({
      log,
      jobs,
      auth,
      metrics,
      metricsToken: config.metricsToken,
      corsOrigins: config.corsOrigins,
      push: pushing,
      maxBodyBytes: config.maxBodyBytes,
      maxBatchBodyBytes: config.maxBatchBodyBytes,
      isDraining: () => draining,
      migrationState: () => migrationState(db),
    });

    let url: string | undefined;
    if (options.listen ?? true) {
      const bound = await listen(app, config.host, config.port);
      server = bound.server;
      url = bound.url;
      log.info(
        {
          url,
          address: bound.address,
          port: bound.port,
          workerId: jobRunner.workerId,
          concurrency: config.runnerConcurrency,
        },
        'listening',
      );
    }

    let stopping: Promise<void> | undefined;
    return {
      url,
      app,
      db,
      runner: jobRunner,
      events,
      feed,
      metrics,
      push: pushing,
      stop: () => (stopping ??= teardown()),
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}
