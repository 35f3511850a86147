/**
 * Writes down what an attempt came to, with fenced writes: answers are completed in groups
 * (one statement per group), failures retried with backoff or failed, interrupted attempts
 * handed back. Each attempt gets one log line and one metric outcome.
 *
 * Writes survive outages: each is retried for as long as the attempt holds its claim
 * (durable-write.ts), so an answer that took 30 s to compute is not lost to a few seconds
 * without Postgres; an answer the database refuses for good hands the job back instead of
 * leaving it running until its lease expires.
 */
import type { Claim, JobRow } from '../db/sql/rows.js';
import type { RunnerStore } from '../db/store.js';
import { isTransientDbError, withDbRetry } from '../db/transient.js';
import type { MatchResult } from '../heuristic/types.js';
import { NonRetryableError } from '../heuristic/errors.js';
import type { Logger } from '../log.js';
import type { AttemptOutcome } from '../metrics.js';
import type { Outcome } from './attempt.js';
import { retryDelayMs } from './backoff.js';
import {
  type DurableWriteOptions,
  type Hold,
  WriteAbandoned,
  untilWritten,
} from './durable-write.js';
import {
  JobCanceledError,
  LeaseLostError,
  ResultNotStoredError,
  ShutdownError,
  jobErrorFrom,
} from './errors.js';
import { GroupCommit, writeApartOnError } from '../group-commit.js';
import type { AttemptStats } from './stats.js';
import { claimOf } from './tracked.js';

export interface RecorderOptions {
  store: RunnerStore;
  workerId: string;
  log: Logger;
  stats: AttemptStats;
  backoffBaseMs: number;
  backoffMaxMs: number;
  random?: () => number;
  /** How long a computed answer stays in the result cache; 0 stores nothing. */
  cacheTtlMs: number;
  metrics?: {
    attempt(outcome: AttemptOutcome, durationMs: number): void;
    answeredWithoutCall(via: 'shared', n: number): void;
    groupSplit(statement: 'completions'): void;
  };
  /** Work may be claimable now (jobs that waited on a failed leader's key). */
  wake(): void;
  /** A retry of this runner's comes due in `ms`. */
  wakeAfter(ms: number): void;
}

/**
 * One attempt being written down. A class, not an object of closures: one is made per attempt,
 * and most attempts use none of it but `durably`'s first try.
 */
class Recording implements DurableWriteOptions {
  readonly claim: Claim;
  #log: Logger | undefined;

  constructor(
    /** The job as its claim returned it. */
    readonly job: JobRow,
    readonly durationMs: number,
    readonly held: Hold,
    private readonly base: Logger,
    private readonly metrics: RecorderOptions['metrics'],
  ) {
    this.claim = claimOf(job);
  }

  /**
   * The attempt's logger, made when a line is logged: a succeeded attempt logs one line at
   * `info` and none above it, and a child logger serializes its bindings when made.
   */
  get log(): Logger {
    return (this.#log ??= this.base.child({
      jobId: this.claim.id,
      clientId: this.job.client_id,
      attempt: this.claim.attempts,
      durationMs: Math.round(this.durationMs),
    }));
  }

  /** The same attempt, its lines logged with `bindings` too. */
  withLog(bindings: Record<string, unknown>): Recording {
    const r = new Recording(this.job, this.durationMs, this.held, this.base, this.metrics);
    r.#log = this.log.child(bindings);
    return r;
  }

  count(what: AttemptOutcome): void {
    this.metrics?.attempt(what, this.durationMs);
  }

  /** Runs a write, retrying transient errors while the claim is held. */
  durably<T>(write: () => Promise<T>): Promise<T> {
    return untilWritten(write, this);
  }

  onRetry(err: unknown, tries: number, delayMs: number): void {
    if (tries === 1 || tries % 10 === 0) {
      this.log.warn(
        { err, tries, retryInMs: delayMs },
        'could not record the attempt; retrying while its lease holds',
      );
    }
  }
}

type Completed = (JobRow & { followers: number }) | undefined;

export class OutcomeRecorder {
  /**
   * Successful attempts are recorded together: one statement per group (group commit). A
   * transient error fails the group (each caller retries); any other error is tried again item
   * by item, so one item that cannot be written does not fail the others.
   */
  private readonly completions: GroupCommit<
    { job: JobRow; result: MatchResult },
    { row: Completed } | { error: unknown }
  >;

  constructor(private readonly opts: RecorderOptions) {
    this.completions = new GroupCommit(
      writeApartOnError(
        (items: { job: JobRow; result: MatchResult }[]) =>
          opts.store.complete({ workerId: opts.workerId, items, cacheTtlMs: opts.cacheTtlMs }),
        (err, jobs) => {
          opts.metrics?.groupSplit('completions');
          opts.log.warn({ err, jobs }, 'a grouped completion failed; writing its jobs one by one');
        },
      ),
    );
  }

  /** Hands claims back as pending, attempts not counted (shutdown, or never started). */
  release(claims: readonly Claim[]): Promise<number> {
    return withDbRetry(() => this.opts.store.release({ workerId: this.opts.workerId, claims }));
  }

  /**
   * `release` in one statement (a job whose outcome was written meanwhile is left as it is: the
   * statement is fenced). False when that failed, logged with `failed`.
   */
  async handBack(claims: readonly Claim[], failed: string): Promise<boolean> {
    if (claims.length === 0) return true;
    try {
      await this.release(claims);
      return true;
    } catch (err) {
      this.opts.log.error({ err }, failed);
      return false;
    }
  }

  /**
   * Records `outcome`. `held` aborts once the attempt may no longer write (its lease was found
   * taken, its job finished elsewhere, or shutdown gave up on it).
   */
  async record(job: JobRow, outcome: Outcome, durationMs: number, held: Hold) {
    const r = new Recording(job, durationMs, held, this.opts.log, this.opts.metrics);
    try {
      switch (outcome.kind) {
        case 'coalesced':
          // Back to pending, attempt not counted; claims skip it until the leader completes it.
          await r.durably(() =>
            this.opts.store.release({ workerId: this.opts.workerId, claims: [r.claim] }),
          );
          r.log.info(
            { outcome: 'coalesced' },
            'job attempt: its key is being computed by another job',
          );
          r.count('coalesced');
          return;
        case 'answered':
          return await this.answered(r, outcome);
        case 'failed':
          return await this.failed(r, outcome.error);
      }
    } catch (err) {
      if (err instanceof WriteAbandoned) {
        r.log.warn(
          { outcome: 'lease_lost', tries: err.tries },
          'could not record the attempt before its claim was lost; it runs again if still due',
        );
        r.count('lease_lost');
      } else {
        r.log.error(
          { err },
          'could not record attempt outcome; the lease will expire and it reruns',
        );
      }
    }
  }

  private async answered(r: Recording, outcome: Extract<Outcome, { kind: 'answered' }>) {
    const completion = await r.durably(async () => {
      const done = await this.completions.submit({ job: r.job, result: outcome.result });
      // A transient error of this item alone (written apart from its group) is retried.
      if ('error' in done && isTransientDbError(done.error)) throw done.error;
      return done;
    });
    if ('error' in completion) {
      r.log.error(
        { err: completion.error },
        "the attempt's result could not be stored; handing the job back",
      );
      return this.recordFailure(r, new ResultNotStoredError(completion.error));
    }
    const row = completion.row;
    if (!row) return this.lost(r);
    if (!outcome.cached) this.opts.stats.record(r.durationMs);
    // Asked first, so a level that drops the line does not make the child logger for it.
    if (this.opts.log.isLevelEnabled('info')) {
      r.log.info(
        {
          outcome: outcome.cached ? 'cached' : 'succeeded',
          matched: outcome.result.merchant !== null,
          ...(row.followers > 0 && { followers: row.followers }),
        },
        'job attempt',
      );
    }
    r.count(outcome.cached ? 'cached' : 'succeeded');
    this.opts.metrics?.answeredWithoutCall('shared', row.followers);
  }

  /**
   * The fenced write found the claim gone: the job was canceled while the attempt ran (the
   * abort may not have reached it yet), or its lease was lost. Either way nothing was written.
   */
  private async lost(r: Recording) {
    const status = await this.opts.store.status(r.claim.id).catch(() => undefined);
    if (status === 'canceled') {
      r.log.info({ outcome: 'canceled' }, 'job attempt finished after the job was canceled');
      r.count('canceled');
    } else {
      r.log.warn({ outcome: 'discarded' }, 'job attempt finished after losing its lease');
      r.count('discarded');
    }
  }

  private async failed(r: Recording, error: Error) {
    if (error instanceof LeaseLostError) {
      r.log.warn({ outcome: 'lease_lost' }, 'job attempt aborted: lease lost');
      r.count('lease_lost');
      return;
    }
    if (error instanceof JobCanceledError) {
      r.log.info({ outcome: 'canceled' }, 'job attempt aborted: the job was canceled');
      r.count('canceled');
      return;
    }
    if (error instanceof ShutdownError) {
      if (!(await error.handedBack)) await this.release([r.claim]);
      r.log.info({ outcome: 'released' }, 'job attempt interrupted by shutdown; job handed back');
      r.count('released');
      return;
    }
    this.opts.stats.record(r.durationMs);
    await this.recordFailure(r, error);
  }

  /** A failed attempt: back to pending with backoff while attempts remain, else `failed`. */
  private async recordFailure(r: Recording, error: Error) {
    const { claim } = r;
    const retry = !(error instanceof NonRetryableError);
    const delay = retryDelayMs(
      claim.attempts,
      { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs },
      this.opts.random,
    );
    const row = await r.durably(() =>
      this.opts.store.fail({
        workerId: this.opts.workerId,
        claim,
        error: jobErrorFrom(error, claim.attempts),
        retry,
        retryDelayMs: delay,
      }),
    );
    const reason = error.message;
    if (!row) {
      await this.lost(r.withLog({ reason }));
    } else if (row.status === 'pending') {
      r.log.warn({ outcome: 'retry', reason, retryInMs: delay }, 'job attempt failed; will retry');
      r.count('retry');
      this.opts.wakeAfter(delay);
    } else {
      r.log.error({ outcome: 'failed', reason }, 'job failed');
      r.count('failed');
    }
    // Jobs that waited on this attempt's key are claimable now: one of them computes it.
    if (row?.cache_key) this.opts.wake();
  }
}
