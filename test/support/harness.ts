import type { Knex } from 'knex';
import supertest from 'supertest';
import { createApp } from '../../src/http/app.js';
import type { Heuristic } from '../../src/heuristic/types.js';
import { Runner, type RunnerOptions } from '../../src/jobs/runner.js';
import { AttemptStats } from '../../src/jobs/stats.js';
import { createLogger } from '../../src/log.js';
import { freshDatabase } from './db.js';

export interface Harness {
  db: Knex;
  runner: Runner;
  http: ReturnType<typeof supertest>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  heuristic: Heuristic;
  runner?: Partial<Omit<RunnerOptions, 'db' | 'heuristic' | 'log' | 'stats'>>;
  /** Start the runner (claiming jobs). @defaultValue true */
  startRunner?: boolean;
  jobMaxAttempts?: number;
}

/**
 * The app and a runner in this process on a clean test database, with fast test settings; the
 * poll is an hour so that anything that happens quickly happened through a wake-up.
 */
export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const db = await freshDatabase();
  const log = createLogger('silent');
  const stats = new AttemptStats();
  const runner = new Runner({
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
    ...opts.runner,
  });
  if (opts.startRunner ?? true) runner.start();
  const app = createApp({
    db,
    log,
    stats,
    maxBodyBytes: 16 * 1024,
    jobMaxAttempts: opts.jobMaxAttempts ?? 3,
    onJobSubmitted: () => runner.wake(),
    isDraining: () => false,
  });
  return {
    db,
    runner,
    http: supertest(app.callback()),
    async stop() {
      await runner.stop(0);
      await db.destroy();
    },
  };
}
