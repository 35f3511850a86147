/**
 * The in-process runner: claims due jobs from Postgres, runs at most `concurrency` heuristic
 * attempts at once (p-queue), keeps their leases alive with a heartbeat, and records each
 * outcome with a fenced write. Lifecycle: `start()`, `wake()` whenever work may be claimable,
 * `stop(graceMs)` which lets running attempts finish and hands the rest back as pending.
 *
 * Wake-ups: a local submit and every NOTIFY call `wake()`; a retry coming due wakes a local
 * timer; the poll (`pollMs`) is only the safety net, and also reaps expired leases.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Knex } from 'knex';
import PQueue from 'p-queue';
import type { Heuristic, Merchant } from '../heuristic/types.js';
import type { Logger } from '../log.js';
import { isTransientDbError, withDbRetry } from '../db/transient.js';
import { retryDelayMs } from './backoff.js';
import { WriteAbandoned, untilWritten, writeApartOnError } from './durable-write.js';
import { GroupCommit } from './group-commit.js';
import {
  AttemptTimeoutError,
  JobCanceledError,
  LeaseLostError,
  NonRetryableError,
  ResultNotStoredError,
  ShutdownError,
  coerceError,
  jobErrorFrom,
} from './errors.js';
import type { AttemptOutcome } from '../metrics.js';
import type { AttemptStats } from './stats.js';
import * as store from './store.js';
import type { Claim, JobRow } from './store.js';

export interface RunnerOptions {
  db: Knex;
  heuristic: Heuristic;
  log: Logger;
  stats: AttemptStats;
  /** Heuristic attempts at once in this process. */
  concurrency: number;
  /** Lease length; the heartbeat renews it every third of this. */
  leaseMs: number;
  /** Per-attempt limit; the attempt's AbortSignal fires with AttemptTimeoutError. */
  timeoutMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Safety-net poll (and lease reaping) interval. */
  pollMs: number;
  /** Finished jobs older than this are purged, every `purgeIntervalMs`. */
  retentionMs: number;
  purgeIntervalMs: number;
  /** Identifies this runner in `locked_by`. @defaultValue host:pid:random */
  workerId?: string;
  random?: () => number;
  /** How long a computed answer stays in the result cache; 0 stores nothing. @defaultValue 0 */
  cacheTtlMs?: number;
  /** Told about every attempt's outcome and each job the reaper failed. */
  metrics?: {
    attempt(outcome: AttemptOutcome, durationMs: number): void;
    answeredWithoutCall(via: 'shared', n: number): void;
    jobsFinished: { inc(labels: { outcome: string }, value?: number): void };
  };
}

interface Attempt {
  claim: Claim;
  job: JobRow;
  controller: AbortController;
  /**
   * Aborted once this attempt may no longer write its outcome: its lease was found taken, the
   * job finished elsewhere (canceled), or shutdown's grace period is over. Until then an
   * outcome that cannot be written for want of a database is retried (durable-write.ts).
   */
  held: AbortController;
  started: boolean;
  /** True once the outcome is recorded (or deliberately dropped). */
  settled: boolean;
  done: Promise<void>;
  markDone: () => void;
}

type Outcome =
  { merchant: Merchant | null; cached?: true } | { error: Error } | { coalesced: true };

const REAP_BATCH = 1000;
/** Attempts shorter than this on average make claims fetch ahead (see `prefetch`). */
const PREFETCH_BELOW_MS = 50;
const PURGE_BATCH = 1000;

export class Runner {
  readonly workerId: string;
  /**
   * Successful attempts are recorded together: one statement per group (group commit). A
   * transient error fails the group (each caller retries, see `record`); any other error is
   * tried again item by item, so one item that cannot be written does not fail the others.
   */
  private readonly completions = new GroupCommit(
    writeApartOnError((items: { claim: Claim; merchant: Merchant | null }[]) =>
      store.completeJobs(this.opts.db, {
        workerId: this.workerId,
        items,
        cacheTtlMs: this.opts.cacheTtlMs ?? 0,
      }),
    ),
  );
  private readonly queue: PQueue;
  private readonly attempts = new Map<string, Attempt>();
  private readonly wakeTimers = new Set<NodeJS.Timeout>();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private claiming: Promise<void> | undefined;
  private claimRequested = false;
  private mayHaveWork = true;
  private pollTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private polling = false;
  private heartbeating = false;

  constructor(private readonly opts: RunnerOptions) {
    this.workerId = opts.workerId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.queue = new PQueue({ concurrency: opts.concurrency });
  }

  start(): void {
    if (this.state !== 'new') throw new Error(`runner cannot start from state ${this.state}`);
    this.state = 'running';
    this.pollTimer = setInterval(() => void this.poll(), this.opts.pollMs);
    this.heartbeatTimer = setInterval(
      () => void this.heartbeat(),
      Math.max(100, Math.floor(this.opts.leaseMs / 3)),
    );
    this.purgeTimer = setInterval(() => void this.purge(), this.opts.purgeIntervalMs);
    void this.poll();
    void this.purge();
  }

  /** Heuristic attempts running now (claimed and started, not yet recorded). */
  get busySlots(): number {
    let n = 0;
    for (const a of this.attempts.values()) if (a.started && !a.settled) n += 1;
    return n;
  }

  /**
   * A job became terminal (FINISHED_CHANNEL). If this runner is still running an attempt of it,
   * the job was canceled (or finished elsewhere): abort the attempt; its result would be
   * discarded by the fenced write anyway, and aborting frees the slot sooner.
   */
  onJobFinished(jobId: string): void {
    for (const a of this.attempts.values()) {
      if (a.claim.id === jobId && !a.settled && !a.controller.signal.aborted) {
        a.controller.abort(new JobCanceledError());
      }
      // Terminal already: no write of this attempt can change it any more.
      if (a.claim.id === jobId && !a.settled) a.held.abort();
    }
  }

  /** Work may be claimable now: a local submit, a NOTIFY, a retry coming due. */
  wake(): void {
    this.mayHaveWork = true;
    void this.claim();
  }

  /**
   * Stops claiming, lets running attempts finish for up to `graceMs`, then aborts the rest and
   * hands their jobs back as pending. Resolves when no attempt of this runner holds a lease.
   */
  stop(graceMs: number): Promise<void> {
    this.stopping ??= this.shutdown(graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'stopping';
    clearInterval(this.pollTimer);
    clearInterval(this.purgeTimer);
    for (const timer of this.wakeTimers) clearTimeout(timer);
    this.wakeTimers.clear();
    if (wasRunning) {
      await this.claiming;
      this.queue.clear();
      await this.releaseUnstarted();
      const finished = Promise.all([...this.attempts.values()].map((a) => a.done));
      let graceTimer: NodeJS.Timeout | undefined;
      const graceOver = new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs)));
      await Promise.race([finished, graceOver]);
      clearTimeout(graceTimer);
      const interrupted = [...this.attempts.values()].filter((a) => !a.settled);
      if (interrupted.length > 0) {
        this.opts.log.warn(
          { jobs: interrupted.length, graceMs },
          'grace period over: handing running jobs back',
        );
      }
      for (const a of interrupted) {
        a.controller.abort(new ShutdownError());
        // An outcome still waiting for the database is given up: the lease expires, it reruns.
        a.held.abort();
      }
      await Promise.all(interrupted.map((a) => a.done));
    }
    clearInterval(this.heartbeatTimer);
    this.state = 'stopped';
  }

  /** Attempts waiting for a slot when stop() began: handed back in one statement. */
  private async releaseUnstarted() {
    const waiting = [...this.attempts.values()].filter((a) => !a.started);
    if (waiting.length === 0) return;
    try {
      await withDbRetry(() =>
        store.releaseClaims(this.opts.db, {
          workerId: this.workerId,
          claims: waiting.map((a) => a.claim),
        }),
      );
    } catch (err) {
      this.opts.log.error({ err }, 'could not hand back queued jobs; their leases will expire');
    }
    for (const a of waiting) this.finish(a);
  }

  private async poll() {
    // A slow database must not stack polls up.
    if (this.state !== 'running' || this.polling) return;
    this.polling = true;
    try {
      for (;;) {
        const { requeued, failed } = await store.reapExpiredLeases(this.opts.db, {
          limit: REAP_BATCH,
          // Our own attempts are alive, whatever their lease says after an outage: the
          // heartbeat renews them, and a finished one is still trying to record its answer.
          except: this.heldClaims().map((c) => c.id),
        });
        if (requeued + failed > 0) {
          this.opts.log.warn({ requeued, failed }, 'reaped jobs whose lease expired');
          if (failed > 0) this.opts.metrics?.jobsFinished.inc({ outcome: 'failed' }, failed);
        }
        if (requeued + failed < REAP_BATCH) break;
      }
    } catch (err) {
      this.opts.log.error({ err }, 'reaping expired leases failed; will retry on next poll');
    } finally {
      this.polling = false;
    }
    this.wake();
  }

  private claim(): Promise<void> {
    if (this.claiming) {
      this.claimRequested = true;
      return this.claiming;
    }
    this.claiming = this.claimLoop().finally(() => (this.claiming = undefined));
    return this.claiming;
  }

  private async claimLoop() {
    try {
      while (this.state === 'running' && this.mayHaveWork) {
        const free = this.opts.concurrency + this.prefetch() - this.attempts.size;
        if (free <= 0) return;
        this.claimRequested = false;
        const jobs = await store.claimJobs(this.opts.db, {
          workerId: this.workerId,
          limit: free,
          leaseMs: this.opts.leaseMs,
        });
        for (const job of jobs) this.dispatch(job);
        // Fewer than asked: the queue is drained, unless a wake-up came in meanwhile.
        if (jobs.length < free && !this.claimRequested) this.mayHaveWork = false;
      }
    } catch (err) {
      this.opts.log.error({ err }, 'claiming jobs failed; will retry on next poll');
    }
  }

  /**
   * Jobs claimed beyond the free slots, to wait here for one: a claim per job costs more than a
   * job that takes a few milliseconds, so for such jobs one claim fetches up to `concurrency`
   * more. Never for slow heuristics: a claimed job waiting here could have run elsewhere.
   */
  private prefetch(): number {
    return this.opts.stats.meanMs < PREFETCH_BELOW_MS ? this.opts.concurrency : 0;
  }

  private dispatch(job: JobRow) {
    let markDone!: () => void;
    const done = new Promise<void>((resolve) => (markDone = resolve));
    const attempt: Attempt = {
      claim: { id: job.id, attempts: job.attempts },
      job,
      controller: new AbortController(),
      held: new AbortController(),
      started: false,
      settled: false,
      done,
      markDone,
    };
    const key = `${job.id}:${job.attempts}`;
    this.attempts.set(key, attempt);
    this.queue
      .add(async () => {
        await this.runAttempt(attempt);
        this.attempts.delete(key);
        if (this.mayHaveWork) void this.claim();
      })
      .catch((err: unknown) => this.opts.log.error({ err, jobId: job.id }, 'runner task failed'));
  }

  private async runAttempt(attempt: Attempt) {
    attempt.started = true;
    const { job, controller } = attempt;
    const signal = controller.signal;
    const timer = setTimeout(
      () => controller.abort(new AttemptTimeoutError(this.opts.timeoutMs)),
      this.opts.timeoutMs,
    );
    const startedAt = performance.now();
    const flight = await this.beginFlight(job);
    if (flight.role !== 'leader') {
      clearTimeout(timer);
      const outcome: Outcome =
        flight.role === 'cached'
          ? { merchant: flight.merchant, cached: true }
          : { coalesced: true };
      await this.record(attempt, outcome, performance.now() - startedAt);
      return;
    }
    // Canceled while it waited for a slot: the heuristic is not called at all.
    const call = Promise.resolve().then(() => {
      signal.throwIfAborted();
      return this.opts.heuristic.match(job.transaction, signal);
    });
    let outcome: Outcome;
    try {
      // A heuristic that ignores its signal is not waited for once the signal fires...
      outcome = { merchant: await Promise.race([call, rejectWhenAborted(signal)]) };
    } catch (err) {
      outcome = { error: signal.aborted ? coerceError(signal.reason) : coerceError(err) };
    } finally {
      clearTimeout(timer);
    }
    await this.record(attempt, outcome, performance.now() - startedAt);
    // ...but it keeps its slot until it really returns, so `concurrency` is never exceeded.
    await call.catch(() => undefined);
  }

  /**
   * Single-flight: a job with a cache key takes the cached answer, or becomes the key's leader,
   * or (another job computes the key right now) a follower. Without the database it runs the
   * heuristic itself: a duplicate call is better than a stuck job.
   */
  private async beginFlight(job: JobRow): Promise<store.Flight> {
    if (job.cache_key === null) return { role: 'leader' };
    try {
      return await store.beginFlight(this.opts.db, {
        cacheKey: job.cache_key,
        claim: { id: job.id, attempts: job.attempts },
      });
    } catch (err) {
      this.opts.log.warn({ err, jobId: job.id }, 'single-flight check failed; running anyway');
      return { role: 'leader' };
    }
  }

  private async record(attempt: Attempt, outcome: Outcome, durationMs: number) {
    const { claim } = attempt;
    const log = this.opts.log.child({
      jobId: claim.id,
      clientId: attempt.job.client_id,
      attempt: claim.attempts,
      durationMs: Math.round(durationMs),
    });
    const count = (outcome: AttemptOutcome) => this.opts.metrics?.attempt(outcome, durationMs);
    // Writes are retried through outages for as long as the claim is held (durable-write.ts).
    const durably = <T>(write: () => Promise<T>) =>
      untilWritten(write, {
        held: attempt.held.signal,
        onRetry: (err, tries, delayMs) => {
          if (tries === 1 || tries % 10 === 0) {
            log.warn(
              { err, tries, retryInMs: delayMs },
              'could not record the attempt; retrying while its lease holds',
            );
          }
        },
      });
    try {
      if ('coalesced' in outcome) {
        // Back to pending, attempt not counted; claims skip it until the leader completes it.
        await durably(() =>
          store.releaseClaims(this.opts.db, { workerId: this.workerId, claims: [claim] }),
        );
        log.info({ outcome: 'coalesced' }, 'job attempt: its key is being computed by another job');
        count('coalesced');
        return;
      }
      if ('merchant' in outcome) {
        const completion = await durably(async () => {
          const done = await this.completions.submit({ claim, merchant: outcome.merchant });
          // A transient error of this item alone (written apart from its group) is retried.
          if ('error' in done && isTransientDbError(done.error)) throw done.error;
          return done;
        });
        if ('error' in completion) {
          await this.handBack(attempt, completion.error, log, count, durably);
          return;
        }
        const row = completion.row;
        if (row) {
          const cached = outcome.cached === true;
          if (!cached) this.opts.stats.record(durationMs);
          log.info(
            {
              outcome: cached ? 'cached' : 'succeeded',
              matched: outcome.merchant !== null,
              ...(row.followers > 0 && { followers: row.followers }),
            },
            'job attempt',
          );
          count(cached ? 'cached' : 'succeeded');
          this.opts.metrics?.answeredWithoutCall('shared', row.followers);
        } else {
          log.warn({ outcome: 'discarded' }, 'job attempt finished after losing its lease');
          count('discarded');
        }
        return;
      }
      const { error } = outcome;
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
        await withDbRetry(() =>
          store.releaseClaims(this.opts.db, { workerId: this.workerId, claims: [claim] }),
        );
        log.info({ outcome: 'released' }, 'job attempt interrupted by shutdown; job handed back');
        count('released');
        return;
      }
      this.opts.stats.record(durationMs);
      await this.recordFailure(attempt, error, log, count, durably);
    } catch (err) {
      if (err instanceof WriteAbandoned) {
        log.warn(
          { outcome: 'lease_lost', tries: err.tries },
          'could not record the attempt before its claim was lost; it runs again if still due',
        );
        count('lease_lost');
      } else {
        log.error({ err }, 'could not record attempt outcome; the lease will expire and it reruns');
      }
    } finally {
      this.finish(attempt);
    }
  }

  /**
   * The attempt's answer cannot be stored (an error retrying will not fix): hand the job back,
   * as a failed attempt that is retried like any other, rather than leave it `running` until
   * its lease expires.
   */
  private async handBack(
    attempt: Attempt,
    cause: unknown,
    log: Logger,
    count: (outcome: AttemptOutcome) => void,
    durably: <T>(write: () => Promise<T>) => Promise<T>,
  ) {
    log.error({ err: cause }, "the attempt's result could not be stored; handing the job back");
    await this.recordFailure(attempt, new ResultNotStoredError(cause), log, count, durably);
  }

  /** A failed attempt: back to pending with backoff while attempts remain, else `failed`. */
  private async recordFailure(
    attempt: Attempt,
    error: Error,
    log: Logger,
    count: (outcome: AttemptOutcome) => void,
    durably: <T>(write: () => Promise<T>) => Promise<T>,
  ) {
    const { claim } = attempt;
    const retry = !(error instanceof NonRetryableError);
    const delay = retryDelayMs(
      claim.attempts,
      { baseMs: this.opts.backoffBaseMs, maxMs: this.opts.backoffMaxMs },
      this.opts.random,
    );
    const row = await durably(() =>
      store.failAttempt(this.opts.db, {
        workerId: this.workerId,
        claim,
        error: jobErrorFrom(error, claim.attempts),
        retry,
        retryDelayMs: delay,
      }),
    );
    const reason = error.message;
    if (!row) {
      log.warn({ outcome: 'discarded', reason }, 'job attempt failed after losing its lease');
      count('discarded');
    } else if (row.status === 'pending') {
      log.warn({ outcome: 'retry', reason, retryInMs: delay }, 'job attempt failed; will retry');
      count('retry');
      this.wakeAfter(delay);
    } else {
      log.error({ outcome: 'failed', reason }, 'job failed');
      count('failed');
    }
    // Jobs that waited on this attempt's key are claimable now: one of them computes it.
    if (row?.cache_key) this.wake();
  }

  private finish(attempt: Attempt) {
    attempt.settled = true;
    attempt.markDone();
  }

  private wakeAfter(ms: number) {
    if (this.state !== 'running') return;
    const timer = setTimeout(() => {
      this.wakeTimers.delete(timer);
      this.wake();
    }, ms);
    timer.unref();
    this.wakeTimers.add(timer);
  }

  /** Claims of attempts not recorded yet: what the heartbeat renews and the reaper spares. */
  private heldClaims(): Claim[] {
    return [...this.attempts.values()].filter((a) => !a.settled).map((a) => a.claim);
  }

  private async heartbeat() {
    const live = [...this.attempts.values()].filter((a) => !a.settled);
    // One at a time: while the database stalls, a renewal may wait longer than the interval.
    if (live.length === 0 || this.heartbeating) return;
    this.heartbeating = true;
    let held: Set<string>;
    try {
      held = await store.renewLeases(this.opts.db, {
        workerId: this.workerId,
        claims: live.map((a) => a.claim),
        leaseMs: this.opts.leaseMs,
      });
    } catch (err) {
      // A lease outlives two missed heartbeats; the next one retries.
      this.opts.log.warn({ err }, 'renewing leases failed');
      return;
    } finally {
      this.heartbeating = false;
    }
    for (const a of live) {
      if (!a.settled && !held.has(a.claim.id)) {
        a.controller.abort(new LeaseLostError());
        a.held.abort();
      }
    }
  }

  private async purge() {
    if (this.state !== 'running') return;
    // The cutoff is computed by the database against its own timestamps (store.ts).
    const olderThanMs = this.opts.retentionMs;
    try {
      let total = 0;
      for (const purgeSome of [store.purgeFinishedJobs, store.purgeFinishedBatches]) {
        for (;;) {
          const n = await purgeSome(this.opts.db, { olderThanMs, limit: PURGE_BATCH });
          total += n;
          if (n < PURGE_BATCH || this.state !== 'running') break;
        }
      }
      if (total > 0)
        this.opts.log.info({ purged: total, olderThanMs }, 'purged finished jobs and batches');
      let expired = 0;
      for (;;) {
        const n = await store.purgeExpiredResults(this.opts.db, { limit: PURGE_BATCH });
        expired += n;
        if (n < PURGE_BATCH || this.state !== 'running') break;
      }
      if (expired > 0) this.opts.log.info({ expired }, 'purged expired result-cache entries');
    } catch (err) {
      this.opts.log.error({ err }, 'purging finished jobs failed; will retry');
    }
  }
}

function rejectWhenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(coerceError(signal.reason));
    else signal.addEventListener('abort', () => reject(coerceError(signal.reason)), { once: true });
  });
}
