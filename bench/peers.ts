/**
 * The peers, measured in the same run on the same Postgres (and Redis for BullMQ): no-op jobs
 * drained at the same concurrency, and pick-up latency (add -> handler start) on an idle queue.
 * Each runs in this process, as its library is meant to be embedded; none goes through HTTP.
 */
import { Queue, Worker } from 'bullmq';
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { now } from './harness.js';

export interface PeerResult {
  drain_jobs_per_s: number;
  pickup_p50_ms: number;
  pickup_p99_ms: number;
}

export interface PeerOptions {
  databaseUrl: string;
  jobs: number;
  concurrency: number;
  /** Sequential jobs for the pick-up latency. */
  pickups: number;
}

/**
 * Drives one peer: `add(n, t)` enqueues n no-op jobs carrying timestamp t; every handler start
 * calls `started(t)`. Returns the drain rate of `jobs` jobs and the pick-up latencies of
 * `pickups` jobs added one at a time to an idle queue.
 */
async function drive(
  opts: PeerOptions,
  start: (onJob: (t: number) => void) => Promise<{
    add: (n: number, t: number) => Promise<void>;
    stop: () => Promise<void>;
  }>,
): Promise<PeerResult> {
  let done = 0;
  let waiter: ((t: number) => void) | undefined;
  const peer = await start((t) => {
    done += 1;
    waiter?.(now() - t);
  });
  try {
    const began = now();
    await peer.add(opts.jobs, began);
    while (done < opts.jobs) await new Promise((resolve) => setTimeout(resolve, 2));
    const drainSeconds = (now() - began) / 1000;

    const lags: number[] = [];
    for (let i = 0; i < opts.pickups; i++) {
      const lag = new Promise<number>((resolve) => (waiter = resolve));
      await peer.add(1, now());
      lags.push(await lag);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    waiter = undefined;
    lags.sort((a, b) => a - b);
    return {
      drain_jobs_per_s: Math.round(opts.jobs / drainSeconds),
      pickup_p50_ms: round2(lags[Math.floor(lags.length * 0.5)] ?? NaN),
      pickup_p99_ms: round2(lags[Math.min(lags.length - 1, Math.floor(lags.length * 0.99))] ?? NaN),
    };
  } finally {
    await peer.stop();
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** Calls `add(size)` for chunks of at most 1000 until `n` are added (bulk-insert APIs). */
async function inThousands(n: number, add: (size: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += 1000) await add(Math.min(1000, n - i));
}

/** graphile-worker in batch mode: local queue of 500, completions batched (delay 0). */
export function graphileWorker(opts: PeerOptions): Promise<PeerResult> {
  return drive(opts, async (onJob) => {
    const quiet = new Logger(() => () => undefined);
    const utils = await makeWorkerUtils({ connectionString: opts.databaseUrl, logger: quiet });
    await utils.migrate();
    const runner = await run({
      connectionString: opts.databaseUrl,
      concurrency: opts.concurrency,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: quiet,
      taskList: {
        noop: (payload) => {
          onJob((payload as { t: number }).t);
          return Promise.resolve();
        },
      },
      preset: {
        worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
      },
    });
    return {
      add: (n, t) =>
        inThousands(n, (size) =>
          utils.addJobs(
            Array.from({ length: size }, () => ({ identifier: 'noop', payload: { t } })),
          ),
        ),
      stop: async () => {
        await runner.stop();
        await utils.release();
      },
    };
  });
}

/** BullMQ on the local Redis, with a worker of the same concurrency. */
export function bullmq(opts: PeerOptions & { redisPort: number }): Promise<PeerResult> {
  return drive(opts, async (onJob) => {
    const connection = { host: '127.0.0.1', port: opts.redisPort, maxRetriesPerRequest: null };
    const queue = new Queue('merchant-bench', { connection });
    await queue.obliterate({ force: true });
    const worker = new Worker(
      'merchant-bench',
      (job) => {
        onJob((job.data as { t: number }).t);
        return Promise.resolve();
      },
      { connection, concurrency: opts.concurrency, removeOnComplete: { count: 0 } },
    );
    await worker.waitUntilReady();
    return {
      add: (n, t) =>
        inThousands(n, (size) =>
          queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: { t } }))),
        ),
      stop: async () => {
        await worker.close();
        await queue.obliterate({ force: true });
        await queue.close();
      },
    };
  });
}

/**
 * pg-boss, fetching batches of `concurrency` at its shortest polling interval (0.5 s). Its v10
 * worker sleeps that interval after every fetch, even a full one; the handler wakes it
 * (`notifyWorker`) after each non-empty batch, so a backlog drains without those sleeps.
 */
export function pgBoss(opts: PeerOptions): Promise<PeerResult> {
  return drive(opts, async (onJob) => {
    const boss = new PgBoss({ connectionString: opts.databaseUrl, schema: 'pgboss_bench' });
    boss.on('error', () => undefined);
    await boss.start();
    await boss.createQueue('merchant-bench');
    let workerId = '';
    workerId = await boss.work<{ t: number }>(
      'merchant-bench',
      { batchSize: opts.concurrency, pollingIntervalSeconds: 0.5 },
      (jobs) => {
        for (const job of jobs) onJob(job.data.t);
        if (jobs.length > 0) boss.notifyWorker(workerId);
        return Promise.resolve();
      },
    );
    return {
      add: (n, t) =>
        inThousands(n, (size) =>
          boss.insert(
            Array.from({ length: size }, () => ({ name: 'merchant-bench', data: { t } })),
          ),
        ),
      stop: () => boss.stop({ graceful: false, wait: true }),
    };
  });
}
