/**
 * Prometheus metrics (prom-client), served at GET /metrics. Counters are per process (sum them
 * across instances); queue depth is read from Postgres, so every instance reports the same
 * shared queue, but at most once per `queueRefreshMs` however many scrapes arrive.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import type { EventCounts } from './db/sql/events.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type AttemptOutcome =
  | 'succeeded'
  | 'retry'
  | 'failed'
  | 'canceled'
  | 'lease_lost'
  | 'released'
  | 'discarded'
  /** Answered from the result cache when claimed: no heuristic call. */
  | 'cached'
  /** Another job was computing the same key: handed back to be completed by it. */
  | 'coalesced';

/** How a job got its answer without its own heuristic call. */
export type CacheVia = 'submit' | 'claim' | 'shared';

export class Metrics {
  readonly registry = new Registry();
  readonly jobsSubmitted: Counter<'via'>;
  readonly jobsFinished: Counter<'outcome'>;
  readonly batchesCompleted: Counter;
  readonly attempts: Counter<'outcome'>;
  readonly heuristicSeconds: Histogram;
  readonly httpSeconds: Histogram<'method' | 'route' | 'status'>;
  readonly cacheHits: Counter<'via'>;
  readonly groupSplits: Counter<'statement'>;

  constructor(sources: {
    db: Knex;
    /** Heuristic attempts running in this process now. */
    busySlots: () => number;
    concurrency: number;
    /** Long-poll requests waiting now. */
    waiters: () => number;
    /** The queue gauges are counted at most this often. @defaultValue 5000 */
    queueRefreshMs?: number;
  }) {
    const queue = new QueueCounts(sources.db, sources.queueRefreshMs ?? 5000);
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.jobsSubmitted = new Counter({
      name: 'merchant_jobs_submitted_total',
      help: 'Jobs accepted (202), by how they were submitted: single or batch.',
      labelNames: ['via'],
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'merchant_jobs_finished_total',
      help:
        'Jobs that reached a terminal status by a statement of this process (each counted once ' +
        'across processes, answers from the cache included), by outcome.',
      labelNames: ['outcome'],
      registers,
    });
    this.batchesCompleted = new Counter({
      name: 'merchant_batches_completed_total',
      help: 'Batches whose last job finished by a statement of this process.',
      registers,
    });
    this.attempts = new Counter({
      name: 'merchant_job_attempts_total',
      help: 'Heuristic attempts by outcome (succeeded, retry, failed, canceled, lease_lost, ...).',
      labelNames: ['outcome'],
      registers,
    });
    this.heuristicSeconds = new Histogram({
      name: 'merchant_heuristic_duration_seconds',
      help: 'Duration of heuristic attempts.',
      buckets: [0.005, 0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 60],
      registers,
    });
    this.httpSeconds = new Histogram({
      name: 'merchant_http_request_duration_seconds',
      help: 'HTTP request duration by method, route template and status (long-polls included).',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60],
      registers,
    });
    this.cacheHits = new Counter({
      name: 'merchant_result_cache_hits_total',
      help:
        'Jobs answered without their own heuristic call: from the result cache at submit or ' +
        'at claim, or shared from another job computing the same key (single-flight).',
      labelNames: ['via'],
      registers,
    });
    this.groupSplits = new Counter({
      name: 'merchant_group_commit_splits_total',
      help:
        'Grouped statements (single submits, completions) the database refused, whose jobs were ' +
        'then written one by one; a rate that does not fall back to 0 means one keeps failing.',
      labelNames: ['statement'],
      registers,
    });
    // Both series exist from the start, so a rate over them is 0, not absent.
    this.groupSplits.inc({ statement: 'submits' }, 0);
    this.groupSplits.inc({ statement: 'completions' }, 0);
    new Gauge({
      name: 'merchant_runner_busy_slots',
      help: 'Heuristic attempts running in this process.',
      registers,
      collect() {
        this.set(sources.busySlots());
      },
    });
    new Gauge({
      name: 'merchant_runner_slots',
      help: 'RUNNER_CONCURRENCY of this process.',
      registers,
      collect() {
        this.set(sources.concurrency);
      },
    });
    new Gauge({
      name: 'merchant_longpoll_waiting_requests',
      help: 'Long-poll requests waiting in this process.',
      registers,
      collect() {
        this.set(sources.waiters());
      },
    });
    new Gauge({
      name: 'merchant_jobs_queued',
      help: 'Jobs not yet finished in the shared database, by status (pending, running).',
      labelNames: ['status'],
      registers,
      async collect() {
        const counts = await queue.read();
        for (const [status, n] of Object.entries(counts ?? {})) this.set({ status }, n);
      },
    });
  }

  /** One heuristic attempt recorded by the runner. */
  attempt(outcome: AttemptOutcome, durationMs: number): void {
    this.attempts.inc({ outcome });
    const heuristicRan = !['released', 'lease_lost', 'cached', 'coalesced'].includes(outcome);
    if (heuristicRan) this.heuristicSeconds.observe(durationMs / 1000);
    if (outcome === 'cached') this.cacheHits.inc({ via: 'claim' });
  }

  /** A grouped statement failed and its jobs are being written one by one. */
  groupSplit(statement: 'submits' | 'completions'): void {
    this.groupSplits.inc({ statement });
  }

  /** `n` jobs answered by another job's heuristic call (single-flight) or at submit. */
  answeredWithoutCall(via: 'submit' | 'shared', n: number): void {
    if (n > 0) this.cacheHits.inc({ via }, n);
  }

  /** Events a statement of this process appended: the only place finished jobs are counted. */
  eventsAppended(counts: EventCounts): void {
    for (const outcome of ['succeeded', 'failed', 'canceled'] as const) {
      const n = counts[`job.${outcome}`] ?? 0;
      if (n > 0) this.jobsFinished.inc({ outcome }, n);
    }
    const batches = counts['batch.completed'] ?? 0;
    if (batches > 0) this.batchesCompleted.inc(batches);
  }
}

/** A scrape waits this long for a fresh count; past it, it reports the last one. */
const QUEUE_READ_WAIT_MS = 1000;

/**
 * Pending and running jobs, counted in the database at most once per `refreshMs`: scrapes in
 * between share the last count, and concurrent scrapes share one count in flight. So any number
 * of scrapers costs one count per interval; a slow or unreachable database makes a scrape
 * report the last count (or no queue gauge before the first) rather than wait or fail.
 */
class QueueCounts {
  private counts: Record<string, number> | undefined;
  private at = -Infinity;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly db: Knex,
    private readonly refreshMs: number,
  ) {}

  async read(): Promise<Record<string, number> | undefined> {
    if (performance.now() - this.at >= this.refreshMs) {
      // Counted as read when it starts, so a failing database is asked once per interval too.
      this.at = performance.now();
      this.reading ??= this.count()
        .then((counts) => {
          this.counts = counts;
        })
        .catch(() => undefined)
        .finally(() => (this.reading = undefined));
    }
    if (this.reading) {
      const waited = new AbortController();
      const timeout = sleep(QUEUE_READ_WAIT_MS, undefined, { signal: waited.signal });
      await Promise.race([this.reading, timeout.catch(() => undefined)]);
      waited.abort();
    }
    return this.counts;
  }

  private async count(): Promise<Record<string, number>> {
    const res = await this.db.raw<{ rows: { status: string; n: number }[] }>(
      `SELECT s.status, (SELECT count(*)::int FROM jobs WHERE status = s.status) AS n
       FROM (VALUES ('pending'), ('running')) AS s(status)`,
    );
    return Object.fromEntries(res.rows.map((r) => [r.status, r.n]));
  }
}
