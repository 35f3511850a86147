/**
 * The in-process runner: claims due jobs from Postgres, runs at most `concurrency` attempts at
 * once (p-queue), keeps their leases alive with a heartbeat, and hands each outcome to the
 * recorder. Lifecycle: `start()`, `wake()` whenever work may be claimable, `stop(graceMs)` which
 * lets running attempts finish and hands the rest back as pending.
 *
 * Wake-ups: a local submit stored pending calls `queued()`, every NOTIFY `wake()`; a retry
 * coming due wakes a local timer; the poll (`pollMs`, the reaper's timer) is only the safety net.
 * A local single submit may also skip the claim altogether: `reserve()`.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import PQueue from 'p-queue';
import type { JobRow } from '../db/sql/rows.js';
import type { RunnerStore } from '../db/store.js';
import type { Heuristic } from '../heuristic/types.js';
import type { Logger } from '../log.js';
import { type AttemptDeps, type Outcome, runAttempt } from './attempt.js';
import { ClaimLoop } from './claim-loop.js';
import { JobCanceledError } from './errors.js';
import { Heartbeat } from './heartbeat.js';
import { Maintenance } from './maintenance.js';
import { LocalQueue, type Reservation, type ReservationOutcome } from './local-queue.js';
import { prefetchJobs } from './prefetch.js';
import { OutcomeRecorder, type RecorderOptions } from './record.js';
import { TrackedAttempt, claimOf } from './tracked.js';
import type { AttemptStats } from './stats.js';
import { windDown } from './wind-down.js';

export interface RunnerOptions {
  store: RunnerStore;
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
  /** Randomness of the retry jitter. @defaultValue Math.random */
  random?: () => number;
  /** How long a computed answer stays in the result cache; 0 stores nothing. @defaultValue 0 */
  cacheTtlMs?: number;
  /** Told about every attempt's outcome. */
  metrics?: RecorderOptions['metrics'];
}

export class Runner {
  readonly workerId: string;
  private readonly recorder: OutcomeRecorder;
  private readonly maintenance: Maintenance;
  private readonly queue: PQueue;
  private readonly attempts = new Map<string, TrackedAttempt>();
  private readonly wakeTimers = new Set<NodeJS.Timeout>();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  /** One claim at a time; the outcome writes that wait for the claim serving their slot. */
  private readonly claims: ClaimLoop;
  /**
   * Attempts whose heuristic has returned and whose outcome is still being written. Their claims
   * are held until written, yet up to `concurrency` of them, plus as many as a claim fetches
   * ahead, do not count against the next claim's size: neither a slot nor the jobs fetched
   * ahead wait for the write to be replaced. This process holds at most 2 x (concurrency +
   * what it fetches ahead) claims, the second half only for as long as outcome writes take, and
   * those are of jobs already run. Counting only `concurrency` of them, a claim of fast jobs
   * (hundreds, all run in one burst) waited for their outcomes' write before the next claim
   * went out, so Postgres ran one or the other, never both, and each side idled while the other
   * worked (docs/performance-log.md, "The next claim behind the last outcomes' write").
   */
  private writing = 0;
  private mayHaveWork = true;
  /** What this runner knows of the pending jobs, for `reserve`. */
  private readonly local = new LocalQueue();
  private readonly heartbeat: Heartbeat;
  private stopping: Promise<void> | undefined;
  private readonly attemptDeps: AttemptDeps;

  constructor(private readonly opts: RunnerOptions) {
    this.workerId = opts.workerId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.queue = new PQueue({ concurrency: opts.concurrency });
    this.claims = new ClaimLoop({
      active: () => this.state === 'running' && this.mayHaveWork,
      round: () => this.claimRound(),
      log: opts.log,
    });
    this.attemptDeps = {
      heuristic: opts.heuristic,
      store: opts.store,
      timeoutMs: opts.timeoutMs,
      log: opts.log,
    };
    this.recorder = new OutcomeRecorder({
      ...opts,
      workerId: this.workerId,
      cacheTtlMs: opts.cacheTtlMs ?? 0,
      wake: () => this.wake(),
      wakeAfter: (ms) => this.wakeAfter(ms),
    });
    this.maintenance = new Maintenance({
      store: opts.store,
      log: opts.log,
      reapEveryMs: opts.pollMs,
      retentionMs: opts.retentionMs,
      purgeEveryMs: opts.purgeIntervalMs,
      afterReap: () => this.wake(),
      // Our own attempts are alive, whatever their lease says after an outage: the heartbeat
      // renews them, and a finished one may still be trying to record its answer.
      spare: () => this.live().map((a) => a.job.id),
    });
    this.heartbeat = new Heartbeat({
      store: opts.store,
      workerId: this.workerId,
      leaseMs: opts.leaseMs,
      log: opts.log,
      live: () => this.live(),
    });
  }

  start(): void {
    if (this.state !== 'new') throw new Error(`runner cannot start from state ${this.state}`);
    this.state = 'running';
    this.heartbeat.start();
    this.maintenance.start();
  }

  /** Slots in use: heuristic calls that have not returned yet (outcomes being written excluded). */
  get busySlots(): number {
    let n = 0;
    for (const a of this.attempts.values()) if (a.inSlot) n += 1;
    return n;
  }

  /**
   * A job became terminal (from the event log). If this runner is still running an attempt of
   * it, the job was canceled (or finished elsewhere): abort the attempt; its result would be
   * discarded by the fenced write anyway, and aborting frees the slot sooner.
   */
  onJobFinished(jobId: string): void {
    for (const a of this.attempts.values()) {
      if (a.job.id === jobId && !a.settled) {
        // Terminal already: no write of this attempt can change it any more.
        a.abandon(new JobCanceledError());
      }
    }
  }

  /**
   * A slot for a job this process is about to insert, so that it is inserted already running
   * under this runner's claim and skips the claim: one statement, one row version and one round
   * trip less on its way to a result. Given only when the pending jobs are known (all queued by
   * this process, since a claim found the queue drained) and a slot is free beyond one for each
   * of them, so a job started this way never takes a slot a pending job waits for (local-queue.ts).
   * Undefined: insert it pending. Once the insert is over, the caller must call `settle` with
   * the row it inserted (or nothing), or `failed` when it did not answer.
   */
  reserve(): Reservation | undefined {
    if (this.state !== 'running' || !this.local.hasSpare(this.freeSlots())) return undefined;
    return this.local.reserve(this.workerId, this.opts.leaseMs, this.reservationOutcome);
  }

  /** What becomes of a reserved slot's insert (one object for all of them). */
  private readonly reservationOutcome: ReservationOutcome = {
    inserted: (row) => {
      if (row.status === 'running' && row.locked_by === this.workerId) this.adopt(row);
    },
    // Had the insert committed, its answer lost with the connection, nothing would run the
    // job nor renew its lease: it would stay running until the lease expired, that attempt
    // counted. Handed back instead (fenced: nothing happens if it is not there), then claimed.
    failed: (id) =>
      void this.recorder
        .handBack([{ id, attempts: 1 }], 'could not hand back a job whose insert failed')
        .then((handedBack) => handedBack && this.wake()),
  };

  /** A job inserted running under this runner's claim (`reserve`): run it, as if claimed. */
  private adopt(job: JobRow) {
    if (this.state === 'running') this.dispatch(job);
    // Stopped meanwhile: hand it back, as shutdown does with the claims it did not start.
    else
      void this.recorder.handBack(
        [claimOf(job)],
        'could not hand back a job submitted during shutdown',
      );
  }

  /** Work may be claimable now: a NOTIFY, a retry coming due, the poll. */
  wake(): void {
    this.local.heardFromElsewhere();
    this.mayHaveWork = true;
    void this.claims.request();
  }

  /** This process queued `pending` jobs (committed): claim them. */
  queued(pending: number): void {
    this.local.queued(pending);
    this.mayHaveWork = true;
    void this.claims.request();
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
    this.maintenance.stop();
    for (const timer of this.wakeTimers) clearTimeout(timer);
    this.wakeTimers.clear();
    if (wasRunning) {
      await this.claims.current;
      this.queue.clear();
      await windDown({
        attempts: () => [...this.attempts.values()],
        graceMs,
        recorder: this.recorder,
        log: this.opts.log,
      });
    }
    this.heartbeat.stop();
    this.state = 'stopped';
  }

  /**
   * The attempt's heuristic has returned: its slot is free, its claim held until its outcome is
   * written (counted in `writing`), and the slot's next job is claimed. Resolves when the outcome
   * may be written (undefined: at once). For a slow heuristic really called (`called`), that is
   * once the claim that includes this slot has come back (or none was made); fast ones are
   * fetched ahead (`prefetch`: their claims are not per slot), and an answer from the cache or a
   * follower handed back did not call the heuristic: their writes go at once. Sent together, the
   * claim and the write shared the two cores and the slot waited for both; a result is written
   * one claim later instead, a few milliseconds on calls of a second or more. Measured, and the
   * variant not kept (one claim per turn of the event loop), in docs/performance-log.md, "The slot's
   * claim before the outcome's write".
   */
  private leaveSlot(attempt: TrackedAttempt, called: boolean): Promise<void> | undefined {
    attempt.inSlot = false;
    if (attempt.settled) return undefined;
    this.writing += 1;
    if (!this.mayHaveWork) return undefined;
    if (called && this.prefetch() === 0) return this.claims.nextRound();
    void this.claims.request();
    return undefined;
  }

  /** Jobs this runner can take now: slots free, plus those it fetches ahead. */
  private freeSlots(prefetch = this.prefetch()): number {
    return (
      this.opts.concurrency +
      prefetch -
      this.attempts.size -
      this.local.reserved +
      Math.min(this.writing, this.opts.concurrency + prefetch)
    );
  }

  /** One claim for the free slots; false when there were too few to claim for. */
  private async claimRound(): Promise<boolean> {
    const prefetch = this.prefetch();
    const free = this.freeSlots(prefetch);
    // With work fetched ahead still waiting here, claim again only once half of it has run:
    // a claim costs about the same for 1 job as for 100 (planning, round trip, commit), and
    // the half left lasts ~10 ms, longer than a claim. Else claims followed each completion
    // group and averaged 10 jobs. Mostly-empty claims of slow jobs still go at once.
    if (free < Math.max(1, Math.ceil(prefetch / 2))) return false;
    const covered = this.local.claimSent(free);
    let jobs: JobRow[];
    try {
      jobs = await this.opts.store.claim({
        workerId: this.workerId,
        limit: free,
        leaseMs: this.opts.leaseMs,
      });
    } catch (err) {
      this.local.claimFailed(covered);
      throw err;
    }
    this.local.claimReturned(covered, free, jobs.length);
    for (const job of jobs) this.dispatch(job);
    // Fewer than asked: the queue is drained, unless a wake-up came in meanwhile.
    if (jobs.length < free && !this.claims.requestedSince) this.mayHaveWork = false;
    return true;
  }

  /** Jobs a claim fetches beyond the free slots now (see prefetch.ts). */
  prefetch(): number {
    return prefetchJobs(this.opts.stats.meanMs, this.opts.concurrency);
  }

  private dispatch(job: JobRow) {
    const attempt = new TrackedAttempt(job);
    const key = `${job.id}:${job.attempts}`;
    this.attempts.set(key, attempt);
    this.queue
      .add(() => this.run(attempt, key))
      .catch((err: unknown) => this.opts.log.error({ err, jobId: job.id }, 'runner task failed'));
  }

  /** An attempt in its slot, until its heuristic has returned; its outcome written meanwhile. */
  private async run(attempt: TrackedAttempt, key: string) {
    attempt.started = true;
    attempt.inSlot = true;
    const { outcome, durationMs, returned, hasReturned } = await runAttempt(
      attempt.job,
      attempt,
      this.attemptDeps,
    );
    // The slot is the heuristic's: it is free once the call has returned, while the outcome
    // is written. Writes of attempts that finish meanwhile then join the same group commit,
    // instead of at most `concurrency` attempts waiting on each write. The attempt keeps its
    // claim (renewed) until the outcome is written, but from the call's return the slot's
    // next job is claimed without waiting for that write (see `writing`): waiting for it left
    // each slot idle for a commit and a claim's round trip per job. For a slow heuristic, the
    // write even waits for that claim (see `leaveSlot`).
    const called = outcome.kind === 'failed' || (outcome.kind === 'answered' && !outcome.cached);
    const writable = hasReturned ? this.leaveSlot(attempt, called) : undefined;
    const recorded = this.write(attempt, outcome, durationMs, writable);
    void (hasReturned ? recorded : Promise.all([recorded, returned]))
      .then(() => {
        this.attempts.delete(key);
        if (this.mayHaveWork) void this.claims.request();
      })
      .catch((err: unknown) =>
        this.opts.log.error({ err, jobId: attempt.job.id }, 'runner task failed'),
      );
    if (hasReturned) return;
    await returned;
    // Aborted (timed out, canceled), the heuristic held its slot until it returned: free it now.
    if (attempt.inSlot) void this.leaveSlot(attempt, false);
  }

  /** Writes the attempt's outcome, once `writable` (if any) resolves, and settles the attempt. */
  private async write(
    attempt: TrackedAttempt,
    outcome: Outcome,
    durationMs: number,
    writable: Promise<void> | undefined,
  ) {
    try {
      if (writable) await writable;
      await this.recorder.record(attempt.job, outcome, durationMs, attempt.held);
    } finally {
      // Out of its slot before its outcome was written: counted in `writing`.
      if (!attempt.inSlot) this.writing -= 1;
      attempt.settle();
    }
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

  /** Attempts not recorded yet: their claims are what the heartbeat renews and the reaper spares. */
  private live(): TrackedAttempt[] {
    return [...this.attempts.values()].filter((a) => !a.settled);
  }
}
