/**
 * The one wiring of the service, used by `src/main.ts` and by the tests: database (embedded or
 * DATABASE_URL), migrations, runner, LISTEN, HTTP app and server; and taking them apart again in
 * the right order on shutdown. Tests pass a config of their own and a heuristic, and may leave
 * the port unbound (driving `app.callback()`) or the runner unstarted; nothing else differs.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Knex } from 'knex';
import { Authenticator } from './auth/authenticator.js';
import { KEYS_REVOKED_CHANNEL } from './auth/keys.js';
import { ensureLocalKey } from './auth/local-key.js';
import type { Config } from './config.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './db/embedded.js';
import { createKnex, migrateLatest } from './db/knex.js';
import { CpuPool } from './heuristic/cpu-pool.js';
import { createMockHeuristic } from './heuristic/mock.js';
import { type Heuristic, cacheKeyOf } from './heuristic/types.js';
import { createApp } from './http/app.js';
import { Admission } from './jobs/admission.js';
import { QueueEstimator } from './jobs/eta.js';
import { JobEvents } from './jobs/events.js';
import { PgNotifier } from './jobs/notifier.js';
import { Runner } from './jobs/runner.js';
import { AttemptStats } from './jobs/stats.js';
import { FINISHED_CHANNEL, PENDING_CHANNEL } from './jobs/store.js';
import { type Logger, createLogger } from './log.js';
import { Metrics } from './metrics.js';

export interface ServiceOptions {
  /** @defaultValue a JSON logger at `config.logLevel` */
  log?: Logger;
  /** The heuristic behind the runner. @defaultValue the bundled mock, configured by HEURISTIC_* */
  heuristic?: Heuristic;
  /** Bind `config.host:config.port`; without it, drive `app.callback()`. @defaultValue true */
  listen?: boolean;
  /** Start claiming jobs at once; otherwise call `runner.start()`. @defaultValue true */
  startRunner?: boolean;
}

export interface Service {
  /** Base URL the HTTP server listens on (`undefined` when started without `listen`). */
  readonly url: string | undefined;
  readonly app: Koa;
  /** The service's own pool. */
  readonly db: Knex;
  readonly runner: Runner;
  readonly events: JobEvents;
  readonly metrics: Metrics;
  /** Graceful: stop accepting, finish or hand back running attempts, close everything. */
  stop(): Promise<void>;
}

export async function startService(
  config: Readonly<Config>,
  options: ServiceOptions = {},
): Promise<Service> {
  const log = options.log ?? createLogger(config.logLevel);
  const customHeuristic = options.heuristic;
  // CPU-bound work goes to worker threads, never more at once than the runner's slots.
  const cpuPool =
    customHeuristic === undefined && config.heuristicCpuMs > 0
      ? new CpuPool(Math.min(config.heuristicThreads, config.runnerConcurrency))
      : undefined;
  const heuristic =
    customHeuristic ??
    createMockHeuristic({
      delayMs: config.heuristicDelayMs,
      failureRate: config.heuristicFailureRate,
      cpuMs: config.heuristicCpuMs,
      cpuPool,
    });
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

  const db = createKnex(databaseUrl, config.databasePoolMax, log);
  const events = new JobEvents();
  let runner: Runner | undefined;
  let notifier: PgNotifier | undefined;
  let server: http.Server | undefined;
  let draining = false;

  const teardown = async () => {
    draining = true;
    // Long-poll requests answer now with what they have, so closing the server does not wait
    // up to a minute for them.
    events.close();
    if (server?.listening) {
      const closed = once(server, 'close');
      server.close();
      server.closeIdleConnections();
      await closed;
    }
    await runner?.stop(config.shutdownGraceMs);
    await cpuPool?.close();
    await notifier?.stop();
    await db.destroy();
    await embedded?.stop();
  };

  try {
    const applied = await migrateLatest(db);
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
    // Zero setup: the embedded database comes with a key; a shared one gets keys from the CLI.
    if (embedded) await ensureLocalKey(db, config.dataDir, log);
    const auth = new Authenticator(db);

    const stats = new AttemptStats();
    let busySlots = () => 0;
    const metrics = new Metrics({
      db,
      busySlots: () => busySlots(),
      concurrency: config.runnerConcurrency,
      waiters: () => events.size,
    });
    const jobRunner = new Runner({
      metrics,
      db,
      heuristic,
      log,
      stats,
      concurrency: config.runnerConcurrency,
      leaseMs: config.jobLeaseMs,
      timeoutMs: config.jobTimeoutMs,
      backoffBaseMs: config.jobBackoffBaseMs,
      backoffMaxMs: config.jobBackoffMaxMs,
      pollMs: config.runnerPollMs,
      retentionMs: config.jobRetentionMs,
      purgeIntervalMs: config.purgeIntervalMs,
      cacheTtlMs: config.resultCacheTtlMs,
    });
    runner = jobRunner;
    const wake = () => jobRunner.wake();
    busySlots = () => jobRunner.busySlots;
    notifier = new PgNotifier({
      connectionString: databaseUrl,
      channels: {
        [PENDING_CHANNEL]: wake,
        [FINISHED_CHANNEL]: (payload) => {
          events.publishFinished(payload);
          jobRunner.onJobFinished(payload.split(' ')[0] ?? '');
        },
        [KEYS_REVOKED_CHANNEL]: (keyId) => auth.forget(keyId),
      },
      onReconnect: () => {
        wake();
        events.wakeAll();
        auth.forgetAll();
      },
      log,
    });
    await notifier.start();
    if (options.startRunner ?? true) jobRunner.start();

    const estimator = new QueueEstimator(db, stats, config.runnerConcurrency);
    const app = createApp({
      db,
      log,
      auth,
      admission: new Admission(db, estimator, {
        clientMaxPending: config.clientMaxPending,
        maxPending: config.maxPendingJobs,
      }),
      events,
      estimator,
      maxBodyBytes: config.maxBodyBytes,
      maxBatchBodyBytes: config.maxBatchBodyBytes,
      jobMaxAttempts: config.jobMaxAttempts,
      jobRetentionMs: config.jobRetentionMs,
      cacheKey: (tx) => (config.resultCacheTtlMs > 0 ? cacheKeyOf(heuristic, tx) : null),
      onJobSubmitted: wake,
      isDraining: () => draining,
      metrics,
      corsOrigins: config.corsOrigins,
    });

    let url: string | undefined;
    if (options.listen ?? true) {
      const handle = app.callback();
      server = http.createServer((req, res) => void handle(req, res));
      // Slow or stalled clients must not hold sockets forever; a long-poll may take 60 s.
      server.requestTimeout = 75_000;
      server.headersTimeout = 10_000;
      server.keepAliveTimeout = 5_000;
      server.listen(config.port, config.host);
      await once(server, 'listening');
      const { port, address } = server.address() as AddressInfo;
      const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
      url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
      log.info(
        {
          url,
          address,
          port,
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
      metrics,
      stop: () => (stopping ??= teardown()),
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}
