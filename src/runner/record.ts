/**
 * Writes down what an attempt came to, with fenced writes: answers are completed in groups
 * (one statement per group), failures retried with backoff or failed, interrupted attempts
 * handed back. Each attempt gets one log line and one metric outcome.
 */
import type { Claim, JobRow } from '../db/sql/rows.js';
import type { RunnerStore } from '../db/store.js';
import { withDbRetry } from '../db/transient.js';
import type { MatchResult } from '../heuristic/types.js';
import { NonRetryableError } from '../heuristic/errors.js';
import type { Logger } from '../log.js';
import type { AttemptOutcome } from '../metrics.js';
import type { Outcome } from './attempt.js';
import { retryDelayMs } from './backoff.js';
import { JobCanceledError, LeaseLostError, ShutdownError, jobErrorFrom } from './errors.js';
import { GroupCommit } from './group-commit.js';
import type { AttemptStats } from './stats.js';

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
  };
  /** Work may be claimable now (jobs that waited on a failed leader's key). */
  wake(): void;
  /** A retry of this runner's comes due in `ms`. */
  wakeAfter(ms: number): void;
}

export class OutcomeRecorder {
  /** Successful attempts are recorded together: one statement per group (group commit). */
  private readonly completions: GroupCommit<
    { claim: Claim; result: MatchResult },
    (JobRow & { followers: number }) | undefined
  >;

  constructor(private readonly opts: RecorderOptions) {
    this.completions = new GroupCommit((items) =>
      withDbRetry(() =>
        opts.store.complete({ workerId: opts.workerId, items, cacheTtlMs: opts.cacheTtlMs }),
      ),
    );
  }

  /** Hands claims back as pending, attempts not counted (shutdown, or never started). */
  release(claims: readonly Claim[]): Promise<number> {
    return withDbRetry(() => this.opts.store.release({ workerId: this.opts.workerId, claims }));
  }

  async record(job: JobRow, outcome: Outcome, durationMs: number): Promise<void> {
    const claim = { id: job.id, attempts: job.attempts };
    const log = this.opts.log.child({
      jobId: claim.id,
      clientId: job.client_id,
      attempt: claim.attempts,
      durationMs: Math.round(durationMs),
    });
    const count = (what: AttemptOutcome) => this.opts.metrics?.attempt(what, durationMs);
    try {
      switch (outcome.kind) {
        case 'coalesced':
          // Back to pending, attempt not counted; claims skip it until the leader completes it.
          await this.release([claim]);
          log.info(
            { outcome: 'coalesced' },
            'job attempt: its key is being computed by another job',
          );
          count('coalesced');
          return;
        case 'answered':
          return await this.answered(claim, outcome, durationMs, log, count);
        case 'failed':
          return await this.failed(claim, outcome.error, durationMs, log, count);
      }
    } catch (err) {
      log.error({ err }, 'could not record attempt outcome; the lease will expire and it reruns');
    }
  }

  private async answered(
    claim: Claim,
    outcome: Extract<Outcome, { kind: 'answered' }>,
    durationMs: number,
    log: Logger,
    count: (what: AttemptOutcome) => void,
  ) {
    const row = await this.completions.submit({ claim, result: outcome.result });
    if (!row) return this.lost(claim, log, count);
    if (!outcome.cached) this.opts.stats.record(durationMs);
    log.info(
      {
        outcome: outcome.cached ? 'cached' : 'succeeded',
        matched: outcome.result.merchant !== null,
        ...(row.followers > 0 && { followers: row.followers }),
      },
      'job attempt',
    );
    count(outcome.cached ? 'cached' : 'succeeded');
    this.opts.metrics?.answeredWithoutCall('shared', row.followers);
  }

  /**
   * The fenced write found the claim gone: the job was canceled while the attempt ran (the
   * abort may not have reached it yet), or its lease was lost. Either way nothing was written.
   */
  private async lost(claim: Claim, log: Logger, count: (what: AttemptOutcome) => void) {
    const status = await this.opts.store.status(claim.id).catch(() => undefined);
    if (status === 'canceled') {
      log.info({ outcome: 'canceled' }, 'job attempt finished after the job was canceled');
      count('canceled');
    } else {
      log.warn({ outcome: 'discarded' }, 'job attempt finished after losing its lease');
      count('discarded');
    }
  }

  private async failed(
    claim: Claim,
    error: Error,
    durationMs: number,
    log: Logger,
    count: (what: AttemptOutcome) => void,
  ) {
    if (error instanceof LeaseLostError) {
      log.warn({ outcome: 'lease_lost' }, 'job attempt aborted: lease lost');
      count('lease_lost');
      return;
    }
    if (error instanceof JobCanceledError) {
      log.info({ outcome: 'canceled' }, 'job attempt aborted: the job was canceled');
      count('canceled');
      return;
    }
    if (error instanceof ShutdownError) {
      await this.release([claim]);
      log.info({ outcome: 'released' }, 'job attempt interrupted by shutdown; job handed back');
      count('released');
      return;
    }
    this.opts.stats.record(durationMs);
    const retry = !(error instanceof NonRetryableError);
    const delay = retryDelayMs(
      claim.attempts,
      { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs },
      this.opts.random,
    );
    const row = await withDbRetry(() =>
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
      await this.lost(claim, log.child({ reason }), count);
    } else if (row.status === 'pending') {
      log.warn({ outcome: 'retry', reason, retryInMs: delay }, 'job attempt failed; will retry');
      count('retry');
      this.opts.wakeAfter(delay);
    } else {
      log.error({ outcome: 'failed', reason }, 'job failed');
      count('failed');
    }
    // Jobs that waited on this attempt's key are claimable now: one of them computes it.
    if (row?.cache_key) this.opts.wake();
  }
}
