/**
 * Configuration: read from the environment in exactly one place, validated, frozen, and passed
 * down. A bad value stops start-up with a message naming the variable.
 */

import os from 'node:os';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Inclusive latency range of the bundled mock heuristic, in milliseconds. */
export interface DelayRange {
  min: number;
  max: number;
}

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
  /** How long a claim is valid without a heartbeat. @defaultValue 30000 */
  jobLeaseMs: number;
  /** Per-attempt time limit; the attempt's AbortSignal fires then. @defaultValue 60000 */
  jobTimeoutMs: number;
  /** Attempts before a job is `failed`. @defaultValue 3 */
  jobMaxAttempts: number;
  /** First retry delay; doubles per attempt, with full jitter. @defaultValue 1000 */
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
  /** pino level. @defaultValue info */
  logLevel: LogLevel;

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

const LOG_LEVELS: readonly LogLevel[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

type Env = Record<string, string | undefined>;

/** Reads, validates and freezes the configuration. Throws ConfigError listing every bad value. */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };

  const int = (name: string, fallback: number, min: number, max: number): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${value}")`);
      return fallback;
    }
    return n;
  };

  /** A non-negative decimal from `min` (or above it, if `minExclusive`) to `max`. */
  const decimal = (
    name: string,
    fallback: number,
    range: { min: number; max: number; minExclusive?: boolean },
  ): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    const aboveMin = range.minExclusive ? n > range.min : n >= range.min;
    if (!/^\d*\.?\d+$/.test(value) || !aboveMin || n > range.max) {
      const from = range.minExclusive ? `above ${range.min}` : `from ${range.min}`;
      problems.push(`${name} must be a number ${from} to ${range.max} (got "${value}")`);
      return fallback;
    }
    return n;
  };

  const delay = (name: string, fallback: DelayRange): DelayRange => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(value);
    const min = m ? Number(m[1]) : NaN;
    const max = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || min > max || max > 600_000) {
      problems.push(
        `${name} must be "N" or "MIN-MAX" milliseconds, MIN <= MAX <= 600000 (got "${value}")`,
      );
      return fallback;
    }
    return { min, max };
  };

  const databaseUrl = raw('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }

  const logLevel = (raw('LOG_LEVEL') ?? 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${raw('LOG_LEVEL')}")`);
  }

  const DAY = 24 * 60 * 60 * 1000;

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
    logLevel,
    corsOrigins: Object.freeze(corsOrigins),
  };

  if (config.jobBackoffMaxMs < config.jobBackoffBaseMs) {
    problems.push('JOB_BACKOFF_MAX_MS must be at least JOB_BACKOFF_BASE_MS');
  }
  if (config.maxPendingJobs < config.clientMaxPending) {
    problems.push('MAX_PENDING_JOBS must be at least CLIENT_MAX_PENDING');
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
