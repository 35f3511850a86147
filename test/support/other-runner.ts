import type { Knex } from 'knex';
import { createKnex } from '../../src/db/knex.js';
import type { Heuristic } from '../../src/heuristic/types.js';
import { Runner, type RunnerOptions } from '../../src/runner/runner.js';
import { AttemptStats } from '../../src/runner/stats.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { databaseUrl } from './db.js';
import { attemptOutcomes } from './metrics.js';
import { announcingStore } from './process-store.js';

/**
 * A test runner's timers: short retries, and the poll, reaping and purges an hour apart, so that
 * nothing but the test wakes it.
 */
export const QUIET_TIMERS = {
  backoffBaseMs: 10,
  backoffMaxMs: 10,
  pollMs: 3_600_000,
  retentionMs: 86_400_000,
  purgeIntervalMs: 3_600_000,
} as const;

export interface OtherRunner {
  runner: Runner;
  /** Its own metrics: what it counted, by outcome. */
  metrics: Metrics;
  /** Outcome -> number of attempts it counted so far. */
  attempts(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/**
 * A second runner on the test's database with a pool of its own, as another process would run
 * it, but without a LISTEN connection: it hears of no cancel and no new job unless woken, so a
 * test decides exactly what it learns and when. What it finishes it announces, as a process does. Not started; call `runner.start()`.
 */
export function otherRunner(
  db: Knex,
  heuristic: Heuristic,
  opts: Partial<Omit<RunnerOptions, 'store' | 'heuristic' | 'log' | 'stats' | 'metrics'>> = {},
): OtherRunner {
  const pool = createKnex(databaseUrl(db), 2, createLogger('silent'));
  const metrics = new Metrics({ db: pool, busySlots: () => 0, concurrency: 1, waiters: () => 0 });
  // What it finishes, it announces as a process does: the test's service hears it.
  const own = announcingStore(pool, (appended) => metrics.eventsAppended(appended.counts));
  const runner = new Runner({
    store: own.store.runner,
    heuristic,
    log: createLogger('silent'),
    stats: new AttemptStats(),
    metrics,
    concurrency: 1,
    leaseMs: 5000,
    timeoutMs: 5000,
    ...QUIET_TIMERS,
    ...opts,
  });
  return {
    runner,
    metrics,
    attempts: () => attemptOutcomes(metrics),
    async stop() {
      await runner.stop(0);
      await own.idle();
      await pool.destroy();
    },
  };
}
