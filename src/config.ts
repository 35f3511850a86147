/**
 * Configuration: read from the environment in exactly one place, validated, frozen, and passed
 * down. A bad value stops start-up with a message naming the variable.
 */

import os from 'node:os';
import { type DelayRange, type Env, envReader } from './env.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** HEURISTIC_THREADS_NICE's default: see src/heuristic/cpu-pool.ts. */
export const DEFAULT_THREADS_NICE = 10;

export const HEURISTIC_KINDS = ['mock', 'http'] as const;
export type HeuristicKind = (typeof HEURISTIC_KINDS)[number];
export const HEURISTIC_CACHE_KEYS = ['transaction', 'description', 'none'] as const;
export type HeuristicCacheKey = (typeof HEURISTIC_CACHE_KEYS)[number];

export type { DelayRange };

export interface Config {
  /** HTTP port. @defaultValue 9898 */
  port: number;
  /**
   * Interface to bind (`HOST`). The embedded database is for one machine, so is the API then.
   * @defaultValue `127.0.0.1` without DATABASE_URL (embedded Postgres), else `0.0.0.0`
   */
  host: string;
  /** Postgres connection string; when unset an embedded Postgres is started. @defaultValue unset */
  databaseUrl: string | undefined;
  /** Where the embedded Postgres keeps its data (and its log). @defaultValue `.data` */
  dataDir: string;
  /** Port for the embedded Postgres; 0 picks a free one at each start. @defaultValue 0 */
  embeddedPgPort: number;
  /** Maximum connections in this process's pool. @defaultValue 10 */
  databasePoolMax: number;
  /** Heuristic attempts running at once in this process. @defaultValue 16 */
  runnerConcurrency: number;
  /** Safety-net poll for due jobs when no notification arrives. @defaultValue 5000 */
  runnerPollMs: number;
  /** Mock heuristic latency. @defaultValue 1000-30000 */
  heuristicDelayMs: DelayRange;
  /** Probability (0..1) that a mock heuristic attempt throws. @defaultValue 0 */
  heuristicFailureRate: number;
  /** CPU time each mock heuristic call burns, on worker threads. @defaultValue 0 */
  heuristicCpuMs: number;
  /** Worker threads for CPU-bound heuristic work. @defaultValue cores - 1, at least 1 */
  heuristicThreads: number;
  /**
   * How much lower than the event loop's the CPU threads' priority is (a nice increment, 0-19):
   * when the cores are all busy, the API is served first. @defaultValue 10
   */
  heuristicThreadsNice: number;
  /**
   * Which heuristic answers: `mock` (bundled) or `http` (the original synchronous service at
   * `heuristicUrl`). @defaultValue mock
   */
  heuristic: HeuristicKind;
  /** With `http`: the endpoint to POST `{date, description, amount}` to. @defaultValue unset */
  heuristicUrl: string | undefined;
  /** With `http`, required: the answers' version, part of every result-cache key. @defaultValue unset */
  heuristicVersion: string | undefined;
  /** With `http`: per-attempt limit on one call (capped by `jobTimeoutMs`). @defaultValue 35000 */
  heuristicTimeoutMs: number;
  /**
   * With `http`: what the result cache keys on: the whole `transaction` (date, description and
   * amount, exactly as sent), the `description` alone, or `none`. @defaultValue transaction
   */
  heuristicCacheKey: HeuristicCacheKey;
  /** How long a claim is valid without a heartbeat. @defaultValue 30000 */
  jobLeaseMs: number;
  /** Per-attempt time limit; the attempt's AbortSignal fires then. @defaultValue 60000 */
  jobTimeoutMs: number;
  /** Attempts before a job is `failed`. @defaultValue 3 */
  jobMaxAttempts: number;
  /** First retry delay; doubles per attempt, with equal jitter (50-100 %). @defaultValue 1000 */
  jobBackoffBaseMs: number;
  /** Cap on the retry delay. @defaultValue 60000 */
  jobBackoffMaxMs: number;
  /**
   * Finished jobs (and batches, once all their jobs finished) older than this are purged, and
   * their idempotency keys with them. At least 1 day. @defaultValue 7 days
   */
  jobRetentionMs: number;
  /** How often the purge runs. @defaultValue 3600000 (1 h) */
  purgeIntervalMs: number;
  /** On SIGTERM/SIGINT, how long running attempts may take to finish. @defaultValue 20000 */
  shutdownGraceMs: number;
  /** Largest accepted request body for `POST /normalize_merchant`. @defaultValue 16384 */
  maxBodyBytes: number;
  /** Largest accepted body for `POST /normalize_merchant/batch`. @defaultValue 2097152 (2 MiB) */
  maxBatchBodyBytes: number;
  /** Pending jobs one client may have; a submit beyond it gets 429. @defaultValue 100000 */
  clientMaxPending: number;
  /** Pending jobs of all clients together; a submit beyond it gets 503. @defaultValue 1000000 */
  maxPendingJobs: number;
  /**
   * How long a computed answer stays in the result cache; 0 turns the cache and single-flight
   * off (every job calls the heuristic). @defaultValue 7 days
   */
  resultCacheTtlMs: number;

  // --- Reliability: bounded waits on the database, start-up, metrics, failed auth, cache scope.

  /**
   * Postgres cancels a statement of the service's pool that runs longer (`statement_timeout`);
   * the client itself gives up on an answer 1 s after that (a stalled connection) and closes
   * the connection. Migrations are exempt. @defaultValue 5000
   */
  databaseStatementTimeoutMs: number;
  /**
   * Longest wait for a pool connection, and for a new connection to open: past it a request
   * gets `503` with Retry-After. @defaultValue 3000
   */
  databaseAcquireTimeoutMs: number;
  /**
   * At start-up, how long to keep retrying a database that does not answer (with backoff,
   * logging each try) before giving up; 0 tries once. @defaultValue 60000
   */
  databaseStartupWaitMs: number;
  /** When set, `GET /metrics` needs `Authorization: Bearer <token>`. @defaultValue unset */
  metricsToken: string | undefined;
  /**
   * The queue gauges of `/metrics` are counted in the database at most this often, however
   * many scrapes arrive. @defaultValue 5000
   */
  metricsQueueRefreshMs: number;
  /**
   * Failed authentications one client address may make per minute; past it, requests from
   * there whose key is not already verified get `429` without a database lookup. @defaultValue 60
   */
  authFailuresPerMinute: number;
  /**
   * Who shares result-cache entries (and single-flight): `client`, each client only its own,
   * or `global`, everyone (fewer heuristic calls, but a client can tell from an instant
   * `succeeded` that someone else looked up the same merchant). @defaultValue client
   */
  resultCacheScope: 'client' | 'global';

  /** pino level. @defaultValue info */
  logLevel: LogLevel;
  /**
   * Allow webhook URLs that resolve to loopback, private, link-local or other non-public
   * addresses, and plain http (local development, tests). @defaultValue false
   */
  webhookAllowPrivate: boolean;
  /** Time limit of one webhook delivery attempt, connect to response. @defaultValue 10000 */
  webhookTimeoutMs: number;
  /**
   * Delay before each retry of a failed delivery (each ±20 % jitter); after the last retry the
   * delivery is failed. @defaultValue 5s,5m,30m,2h,5h,10h,10h,14h,14h,14h (about 3 days)
   */
  webhookRetryScheduleMs: readonly number[];
  /** Webhook deliveries in flight at once in this process. @defaultValue 16 */
  webhookConcurrency: number;
  /** Deliveries in flight at once to one endpoint, across all processes. @defaultValue 4 */
  webhookEndpointConcurrency: number;
  /** An endpoint failing without a success for this long is disabled. @defaultValue 5 days */
  webhookDisableAfterMs: number;
  /** Safety-net poll for due deliveries when no notification arrives. @defaultValue 30000 */
  webhookPollMs: number;
  /** Interval of heartbeat comments on `GET /events`. @defaultValue 15000 */
  eventsHeartbeatMs: number;
  /**
   * `GET /events` streams one client may hold open in this process; one more is refused with
   * `429`. Each stream reads the log on its own, so this bounds what one client's runaway
   * reconnect loop costs the database. @defaultValue 100
   */
  eventsMaxStreamsPerClient: number;

  // Browser access (issue 15).
  /**
   * Origins whose web pages may call the API from a browser (CORS), from the comma-separated
   * `CORS_ORIGINS`: exact origins such as `https://app.example.com`, or `*` for any. Empty
   * sends no CORS headers, so browsers allow only same-origin pages (such as the dashboard).
   * @defaultValue empty
   */
  corsOrigins: readonly string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export const LOG_LEVELS: readonly LogLevel[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

/** Reads, validates and freezes the configuration. Throws ConfigError listing every bad value. */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const { problems, raw, int, decimal, delay, oneOf, httpUrl, bool, durations } = envReader(env);

  const databaseUrl = raw('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }

  const logLevel = (raw('LOG_LEVEL') ?? 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${raw('LOG_LEVEL')}")`);
  }

  const DAY = 24 * 60 * 60 * 1000;

  const metricsToken = raw('METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[\x21-\x7e]{16,256}$/.test(metricsToken)) {
    problems.push('METRICS_TOKEN must be 16 to 256 visible ASCII characters, no spaces');
  }
  const resultCacheScope = (raw('RESULT_CACHE_SCOPE') ?? 'client').toLowerCase();
  if (resultCacheScope !== 'client' && resultCacheScope !== 'global') {
    problems.push(
      `RESULT_CACHE_SCOPE must be "client" or "global" (got "${raw('RESULT_CACHE_SCOPE')}")`,
    );
  }
  const corsOrigins = (raw('CORS_ORIGINS') ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  for (const origin of corsOrigins) {
    if (origin !== '*' && !isOrigin(origin)) {
      problems.push(
        `CORS_ORIGINS must be "*" or comma-separated origins like https://app.example.com ` +
          `(scheme://host[:port], no path) (got "${origin}")`,
      );
    }
  }

  const config: Config = {
    port: int('PORT', 9898, 0, 65535),
    host: raw('HOST') ?? (databaseUrl === undefined ? '127.0.0.1' : '0.0.0.0'),
    databaseUrl,
    dataDir: raw('DATA_DIR') ?? '.data',
    embeddedPgPort: int('EMBEDDED_PG_PORT', 0, 0, 65535),
    databasePoolMax: int('DATABASE_POOL_MAX', 10, 2, 1000),
    runnerConcurrency: int('RUNNER_CONCURRENCY', 16, 1, 10_000),
    runnerPollMs: int('RUNNER_POLL_MS', 5000, 50, DAY),
    heuristicDelayMs: delay('HEURISTIC_DELAY_MS', { min: 1000, max: 30_000 }),
    heuristicFailureRate: decimal('HEURISTIC_FAILURE_RATE', 0, { min: 0, max: 1 }),
    heuristicCpuMs: int('HEURISTIC_CPU_MS', 0, 0, 600_000),
    heuristicThreads: int('HEURISTIC_THREADS', Math.max(1, os.availableParallelism() - 1), 1, 256),
    heuristicThreadsNice: int('HEURISTIC_THREADS_NICE', DEFAULT_THREADS_NICE, 0, 19),
    heuristic: oneOf('HEURISTIC', HEURISTIC_KINDS, 'mock'),
    heuristicUrl: httpUrl('HEURISTIC_URL'),
    heuristicVersion: raw('HEURISTIC_VERSION'),
    heuristicTimeoutMs: int('HEURISTIC_TIMEOUT_MS', 35_000, 10, DAY),
    heuristicCacheKey: oneOf('HEURISTIC_CACHE_KEY', HEURISTIC_CACHE_KEYS, 'transaction'),
    jobLeaseMs: int('JOB_LEASE_MS', 30_000, 300, DAY),
    jobTimeoutMs: int('JOB_TIMEOUT_MS', 60_000, 10, DAY),
    jobMaxAttempts: int('JOB_MAX_ATTEMPTS', 3, 1, 100),
    jobBackoffBaseMs: int('JOB_BACKOFF_BASE_MS', 1000, 0, DAY),
    jobBackoffMaxMs: int('JOB_BACKOFF_MAX_MS', 60_000, 0, DAY),
    jobRetentionMs: Math.round(decimal('JOB_RETENTION_DAYS', 7, { min: 1, max: 3650 }) * DAY),
    purgeIntervalMs: int('PURGE_INTERVAL_MS', 60 * 60 * 1000, 1000, DAY),
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 20_000, 0, 10 * 60 * 1000),
    maxBodyBytes: int('MAX_BODY_BYTES', 16 * 1024, 1024, 10 * 1024 * 1024),
    maxBatchBodyBytes: int('MAX_BATCH_BODY_BYTES', 2 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    clientMaxPending: int('CLIENT_MAX_PENDING', 100_000, 1, 100_000_000),
    maxPendingJobs: int('MAX_PENDING_JOBS', 1_000_000, 1, 1_000_000_000),
    resultCacheTtlMs: int('RESULT_CACHE_TTL_MS', 7 * DAY, 0, 3650 * DAY),
    databaseStatementTimeoutMs: int('DATABASE_STATEMENT_TIMEOUT_MS', 5000, 100, 10 * 60 * 1000),
    databaseAcquireTimeoutMs: int('DATABASE_ACQUIRE_TIMEOUT_MS', 3000, 100, 10 * 60 * 1000),
    databaseStartupWaitMs: int('DATABASE_STARTUP_WAIT_MS', 60_000, 0, DAY),
    metricsToken,
    metricsQueueRefreshMs: int('METRICS_QUEUE_REFRESH_MS', 5000, 100, DAY),
    authFailuresPerMinute: int('AUTH_FAILURES_PER_MINUTE', 60, 1, 1_000_000),
    resultCacheScope: resultCacheScope === 'global' ? 'global' : 'client',
    logLevel,
    webhookAllowPrivate: bool('WEBHOOK_ALLOW_PRIVATE', false),
    webhookTimeoutMs: int('WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
    webhookRetryScheduleMs: Object.freeze(
      durations(
        'WEBHOOK_RETRY_SCHEDULE',
        [5, 300, 1800, 7200, 18_000, 36_000, 36_000, 50_400, 50_400, 50_400].map((s) => s * 1000),
        7 * DAY,
      ),
    ),
    webhookConcurrency: int('WEBHOOK_CONCURRENCY', 16, 1, 1000),
    webhookEndpointConcurrency: int('WEBHOOK_ENDPOINT_CONCURRENCY', 4, 1, 1000),
    webhookDisableAfterMs: int('WEBHOOK_DISABLE_AFTER_MS', 5 * DAY, 1000, 365 * DAY),
    webhookPollMs: int('WEBHOOK_POLL_MS', 30_000, 50, DAY),
    eventsHeartbeatMs: int('EVENTS_HEARTBEAT_MS', 15_000, 10, 10 * 60_000),
    eventsMaxStreamsPerClient: int('EVENTS_MAX_STREAMS_PER_CLIENT', 100, 1, 100_000),
    corsOrigins: Object.freeze(corsOrigins),
  };

  if (config.jobBackoffMaxMs < config.jobBackoffBaseMs) {
    problems.push('JOB_BACKOFF_MAX_MS must be at least JOB_BACKOFF_BASE_MS');
  }
  if (config.maxPendingJobs < config.clientMaxPending) {
    problems.push('MAX_PENDING_JOBS must be at least CLIENT_MAX_PENDING');
  }
  if (config.heuristic === 'http') {
    if (raw('HEURISTIC_URL') === undefined) {
      problems.push('HEURISTIC_URL is required with HEURISTIC=http');
    }
    if (config.heuristicVersion === undefined) {
      problems.push(
        'HEURISTIC_VERSION is required with HEURISTIC=http: the result cache keys on it, so ' +
          'change it whenever the heuristic behind HEURISTIC_URL changes its answers',
      );
    }
  }
  if (
    config.heuristicVersion !== undefined &&
    !/^[\x21-\x7e]{1,100}$/.test(config.heuristicVersion)
  ) {
    problems.push(
      `HEURISTIC_VERSION must be 1 to 100 visible ASCII characters (got "${config.heuristicVersion}")`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** `scheme://host[:port]` and nothing else, as a browser sends it in `Origin`. */
function isOrigin(value: string): boolean {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}
