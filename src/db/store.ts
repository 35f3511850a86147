/**
 * The store: the data-access modules (sql/) bound to one pool, as the runner and the use-cases
 * receive them. Every statement that appends events reports what it appended to `onAppended`,
 * after its commit: the one place that hears about every terminal change this process writes
 * (metrics count each event exactly once, in the process whose statement wrote it; the event
 * feed hands them on and tells the other processes).
 */
import { jobReader } from './job-reader.js';
import type { Knex } from 'knex';
import * as activity from './sql/activity.js';
import * as batchFiles from './sql/batch-files.js';
import * as batches from './sql/batches.js';
import * as cache from './sql/cache.js';
import * as claims from './sql/claims.js';
import type { Appended } from './sql/events.js';
import * as events from './sql/events.js';
import * as jobs from './sql/jobs.js';
import * as outcomes from './sql/outcomes.js';
import * as statistics from './sql/statistics.js';
import * as submits from './sql/submits.js';
import type { Claim, JobError, JobRow } from './sql/rows.js';
import type { MatchResult } from '../heuristic/types.js';

/** A data-access function with its database handle bound. */
type Bound<F> = F extends (db: Knex, ...rest: infer A) => infer R ? (...args: A) => R : never;
/** Bound, with the events it appended reported to the hook instead of returned. */
type Reported<F> = F extends (db: Knex, ...rest: infer A) => Promise<infer R>
  ? (...args: A) => Promise<Unreported<R>>
  : never;
type Unreported<R> = R extends { events: Appended } ? Omit<R, 'events'> : R;

/** What the runner needs: claim, renew, record outcomes, single-flight, reap and purge. */
export interface RunnerStore {
  claim: Bound<typeof claims.claimJobs>;
  renew: Bound<typeof claims.renewLeases>;
  /**
   * One statement for a group of completions, each item the job as claimed and its answer; one
   * entry per item (undefined: claim lost).
   */
  complete(opts: {
    workerId: string;
    items: readonly { job: JobRow; result: MatchResult }[];
    cacheTtlMs?: number;
  }): Promise<((JobRow & { followers: number }) | undefined)[]>;
  fail(opts: {
    workerId: string;
    claim: Claim;
    error: JobError;
    retry: boolean;
    retryDelayMs: number;
  }): Promise<JobRow | undefined>;
  release: Bound<typeof claims.releaseClaims>;
  /** A job's status now: why an attempt's fenced write found its claim gone. */
  status: Bound<typeof jobs.jobStatus>;
  beginFlight: Bound<typeof cache.beginFlight>;
  reap: Reported<typeof claims.reapExpiredLeases>;
  purgeJobs: Bound<typeof jobs.purgeFinishedJobs>;
  purgeBatches: Bound<typeof batches.purgeFinishedBatches>;
  purgeResults: Bound<typeof cache.purgeExpiredResults>;
  purgeEvents: Bound<typeof events.purgeEvents>;
  refreshStatistics: Bound<typeof statistics.refreshOutgrownStatistics>;
}

/** What the use-cases (submit, read, list, cancel) need. */
export interface JobStore {
  insertJob: (job: submits.JobToInsert) => ReturnType<Reported<typeof submits.insertJob>>;
  insertBatch: Reported<typeof batches.insertBatch>;
  insertBatchFile: Reported<typeof batchFiles.insertBatchFile>;
  /** Tells runners in every process that jobs are pending (a NOTIFY of its own). */
  announcePending: Bound<typeof submits.announcePending>;
  cancelJob: Reported<typeof jobs.cancelJob>;
  getJob: Bound<typeof jobs.getJob>;
  listJobs: Bound<typeof jobs.listJobs>;
  getBatch: Bound<typeof batches.getBatch>;
  getBatchItems: Bound<typeof batches.getBatchItems>;
  getBatchFileItems: Bound<typeof batchFiles.getBatchFileItems>;
  listBatches: Bound<typeof batches.listBatches>;
  clientActivity: Bound<typeof activity.clientActivity>;
  countPending: Bound<typeof jobs.countPending>;
  countPendingBefore: Bound<typeof jobs.countPendingBefore>;
  countActiveWorkers: Bound<typeof jobs.countActiveWorkers>;
}

export interface Store extends JobStore {
  readonly db: Knex;
  readonly runner: RunnerStore;
}

export interface StoreHooks {
  /** Events a statement of this process appended, once it committed. */
  onAppended?: (appended: Appended) => void;
  /**
   * A grouped insert of single submits failed and its jobs are being written one by one (each
   * then gets its own answer). Expected now and then (one refused job); if it keeps happening,
   * the grouped statement itself is failing.
   */
  onSubmitGroupSplit?: (err: unknown, jobs: number) => void;
}

/** A completed row as a read returns it (a completion also counts the jobs it answered too). */
function withoutFollowers({
  followers: _followers,
  ...row
}: JobRow & { followers: number }): JobRow {
  return row;
}

export function createStore(db: Knex, hooks: StoreHooks = {}): Store {
  /** Reports a statement's events and hands back the rest of its result. */
  const reported = <T extends { events: Appended }>(result: T): Omit<T, 'events'> => {
    const { events, ...rest } = result;
    if (events.txId !== undefined) hooks.onAppended?.(events);
    return rest;
  };
  const getJob = jobReader(db);
  const insertJob = submits.jobInserter(db, { onSplit: hooks.onSubmitGroupSplit });
  const runner: RunnerStore = {
    claim: (opts) => claims.claimJobs(db, opts),
    renew: (opts) => claims.renewLeases(db, opts),
    complete: async (opts) => {
      const done = await outcomes.completeJobs(db, opts);
      // Before the events wake this process's waiters: they read these rows at once.
      getJob.prime(done.rows.flatMap((row) => (row ? [withoutFollowers(row)] : [])));
      return reported(done).rows;
    },
    fail: async (opts) => reported(await outcomes.failAttempt(db, opts)).row,
    release: (opts) => claims.releaseClaims(db, opts),
    status: (id) => jobs.jobStatus(db, id),
    beginFlight: (opts) => cache.beginFlight(db, opts),
    reap: async (opts) => reported(await claims.reapExpiredLeases(db, opts)),
    purgeJobs: (opts) => jobs.purgeFinishedJobs(db, opts),
    purgeBatches: (opts) => batches.purgeFinishedBatches(db, opts),
    purgeResults: (opts) => cache.purgeExpiredResults(db, opts),
    purgeEvents: (opts) => events.purgeEvents(db, opts),
    refreshStatistics: () => statistics.refreshOutgrownStatistics(db),
  };
  return {
    db,
    runner,
    insertJob: async (job) => reported(await submits.insertJob(db, job, insertJob)),
    insertBatch: async (batch) => reported(await batches.insertBatch(db, batch)),
    insertBatchFile: async (batch) => reported(await batchFiles.insertBatchFile(db, batch)),
    announcePending: (origin) => submits.announcePending(db, origin),
    cancelJob: async (id, owner) => {
      const canceled = await jobs.cancelJob(db, id, owner);
      return canceled && reported(canceled);
    },
    getJob,
    listJobs: (opts) => jobs.listJobs(db, opts),
    getBatch: (id, owner) => batches.getBatch(db, id, owner),
    getBatchItems: (opts) => batches.getBatchItems(db, opts),
    getBatchFileItems: (opts) => batchFiles.getBatchFileItems(db, opts),
    listBatches: (opts) => batches.listBatches(db, opts),
    clientActivity: (opts) => activity.clientActivity(db, opts),
    countPending: (opts) => jobs.countPending(db, opts),
    countPendingBefore: (seq, cap) => jobs.countPendingBefore(db, seq, cap),
    countActiveWorkers: () => jobs.countActiveWorkers(db),
  };
}
