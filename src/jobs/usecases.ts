/**
 * The use-cases clients reach through the API: submit one transaction or a batch, read, wait
 * for, list and cancel jobs and batches. Routes parse and render; everything they decide is here,
 * and what it refuses it throws as a domain error (errors.ts).
 */
import type { BatchPosition } from '../db/sql/batches.js';
import type { BatchItemRow, BatchRow, Idempotency, JobRow, JobStatus } from '../db/sql/rows.js';
import { isTerminal } from '../db/sql/rows.js';
import type { JobStore } from '../db/store.js';
import type { Transaction } from '../heuristic/types.js';
import { newId } from '../ids.js';
import type { Admission } from './admission.js';
import {
  AlreadyFinishedError,
  FileBatchesBusyError,
  IdempotencyKeyReusedError,
} from '../errors.js';
import type { Reservation } from '../runner/local-queue.js';
import type { QueueEstimator } from './eta.js';
import { type JobEvents, batchTopic, jobTopic } from './hub.js';
import { missing } from './gone.js';
import { waitFor } from './waiting.js';

export interface JobsDeps {
  store: JobStore;
  /** Pending-job caps, per client and overall. */
  admission: Admission;
  estimator: QueueEstimator;
  /** Where long-poll waiters hear that a job or batch changed. */
  events: JobEvents;
  jobMaxAttempts: number;
  /** How long finished jobs are kept: an older id that is missing is gone, not unknown. */
  jobRetentionMs: number;
  /** The result-cache key of a client's transaction, or null: not cacheable. */
  cacheKey: (tx: Transaction, clientId: string) => string | null;
  /** `pending` jobs were queued here: the local runner may claim them at once. */
  onJobSubmitted: (pending: number) => void;
  /**
   * A free slot of the local runner for a single submit about to be inserted (Runner.reserve):
   * the job is inserted running under the runner's claim, and `settle` hands it the row.
   * @defaultValue none: every job is inserted pending
   */
  reserveSlot?: () => Reservation | undefined;
  /**
   * Longest a statement of a file batch's final insert may take (100,000 jobs at once take
   * longer than the pool's statement timeout). @defaultValue 60000
   */
  fileBatchInsertTimeoutMs?: number;
  /**
   * File batches taken at once: each holds a pool connection while it is uploaded, so they
   * must leave the pool to everything else. @defaultValue 2
   */
  maxFileBatchesInFlight?: number;
  metrics?: {
    jobsSubmitted: { inc(labels: { via: 'single' | 'batch' }, value?: number): void };
    answeredWithoutCall(via: 'submit', n: number): void;
  };
}

/** A job or batch that can be read again and waited on. */
export interface Watched<Row> {
  kind: 'job' | 'batch';
  /** The id as the caller gave it. */
  id: string;
  topic: string;
  load(): Promise<Row | undefined>;
  /** Terminal: nothing about it will change any more. */
  isFinal(row: Row): boolean;
  /** Seconds until looking again is worthwhile, for a row that is not final. */
  retryAfter(row: Row): Promise<number>;
  /** The same for a row just submitted: an estimate that costs no query. */
  retryAfterSubmitted(row: Row): number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `read(id)` for a well-formed id (lower-cased); nothing for anything else. */
function byUuid<T>(id: string, read: (uuid: string) => Promise<T | undefined>) {
  return UUID.test(id) ? read(id.toLowerCase()) : Promise.resolve(undefined);
}

/** Every job of the batch is terminal. */
export const batchDone = (row: BatchRow) => row.succeeded + row.failed + row.canceled === row.size;

export class Jobs {
  /** File batches being uploaded now. */
  private fileBatchesInFlight = 0;

  constructor(private readonly deps: JobsDeps) {}

  /** Stores one transaction as a job (or replays an idempotent submit); 202 material. */
  async submitJob(
    owner: string,
    transaction: Transaction,
    idempotency?: Idempotency,
  ): Promise<{ row: JobRow; replayed: boolean }> {
    const { store, admission, metrics } = this.deps;
    // Started at once when the local runner has a slot free and nothing queued.
    const slot = this.deps.reserveSlot?.();
    const id = newId();
    let inserted: Awaited<ReturnType<JobStore['insertJob']>> | undefined;
    let sent = false;
    try {
      inserted = await admission.admitting(
        owner,
        1,
        () => {
          sent = true;
          return store.insertJob({
            id,
            clientId: owner,
            transaction,
            maxAttempts: this.deps.jobMaxAttempts,
            idempotency,
            cacheKey: this.deps.cacheKey(transaction, owner),
            runBy: slot,
          });
        },
        (r) => (r.created && r.row.status === 'pending' ? 1 : 0),
      );
    } finally {
      if (inserted) slot?.settle(inserted.created ? inserted.row : undefined);
      // Sent but unanswered: it may have committed all the same, its answer lost.
      else if (sent) slot?.failed(id);
      // Refused before the insert: nothing to hand back.
      else slot?.settle(undefined);
    }
    if (!inserted.created) {
      checkReplay(idempotency, inserted.requestHash, 'job');
      return { row: inserted.row, replayed: true };
    }
    metrics?.jobsSubmitted.inc({ via: 'single' });
    // Answered from the result cache, it never queued; started at once, it did not either.
    if (inserted.row.status === 'pending') this.deps.onJobSubmitted(1);
    else if (inserted.row.status === 'succeeded') metrics?.answeredWithoutCall('submit', 1);
    return { row: inserted.row, replayed: false };
  }

  /** Stores 1..n transactions as a batch, all or nothing (or replays an idempotent submit). */
  async submitBatch(
    owner: string,
    transactions: readonly Transaction[],
    idempotency?: Idempotency,
  ): Promise<{ row: BatchRow; jobIds: string[]; replayed: boolean }> {
    const { store, admission, metrics } = this.deps;
    const n = transactions.length;
    const inserted = await admission.admitting(
      owner,
      n,
      () =>
        store.insertBatch({
          id: newId(),
          clientId: owner,
          transactions,
          jobIds: transactions.map(() => newId()),
          maxAttempts: this.deps.jobMaxAttempts,
          idempotency,
          cacheKeys: transactions.map((tx) => this.deps.cacheKey(tx, owner)),
        }),
      (r) => (r.created ? (r.row?.pending ?? 0) : 0),
    );
    if (inserted.created && inserted.row) {
      metrics?.jobsSubmitted.inc({ via: 'batch' }, n);
      // Answered from the result cache, those never queued.
      const cached = inserted.row.succeeded;
      metrics?.answeredWithoutCall('submit', cached);
      if (cached < n) this.deps.onJobSubmitted(n - cached);
      return { row: inserted.row, jobIds: inserted.jobIds, replayed: false };
    }
    checkReplay(idempotency, inserted.requestHash, 'batch');
    // A new batch is known from its insert; only a replay needs reading.
    const row = await store.getBatch(inserted.id, owner);
    if (!row) throw this.missing('batch', inserted.id); // purged the same instant
    return { row, jobIds: inserted.jobIds, replayed: true };
  }

  /**
   * Stores a whole file of transactions as one batch, all or nothing, storing them as they
   * arrive (an error thrown by `transactions` stores nothing); the quota is checked once they are
   * all in and counted. `idempotency` is read then too (a file's fingerprint is known at its end).
   */
  async submitBatchFile(
    owner: string,
    transactions: AsyncIterable<Transaction>,
    idempotency: () => Idempotency | undefined,
  ): Promise<{ row: BatchRow; replayed: boolean }> {
    const limit = this.deps.maxFileBatchesInFlight ?? 2;
    if (this.fileBatchesInFlight >= limit) throw new FileBatchesBusyError(limit);
    this.fileBatchesInFlight += 1;
    try {
      return await this.storeBatchFile(owner, transactions, idempotency);
    } finally {
      this.fileBatchesInFlight -= 1;
    }
  }

  private async storeBatchFile(
    owner: string,
    transactions: AsyncIterable<Transaction>,
    idempotency: () => Idempotency | undefined,
  ): Promise<{ row: BatchRow; replayed: boolean }> {
    const { store, admission, metrics } = this.deps;
    const cacheKey = this.deps.cacheKey;
    async function* rows() {
      for await (const transaction of transactions) {
        yield { id: newId(), transaction, cacheKey: cacheKey(transaction, owner) };
      }
    }
    let admitted = 0;
    let inserted;
    try {
      inserted = await store.insertBatchFile({
        id: newId(),
        clientId: owner,
        rows: rows(),
        maxAttempts: this.deps.jobMaxAttempts,
        idempotency,
        insertTimeoutMs: this.deps.fileBatchInsertTimeoutMs ?? 60_000,
        admit: async (n) => {
          await admission.admit(owner, n);
          admitted = n;
        },
      });
    } catch (err) {
      admission.release(owner, admitted);
      throw err;
    }
    // What did not end up queued: all of a replay, the cache hits of a new batch.
    admission.release(owner, admitted - (inserted.created ? (inserted.row?.pending ?? 0) : 0));
    if (inserted.created && inserted.row) {
      const n = inserted.size;
      metrics?.jobsSubmitted.inc({ via: 'batch' }, n);
      const cached = inserted.row.succeeded;
      metrics?.answeredWithoutCall('submit', cached);
      if (cached < n) this.deps.onJobSubmitted(n - cached);
      return { row: inserted.row, replayed: false };
    }
    checkReplay(idempotency(), inserted.requestHash, 'batch');
    const row = await store.getBatch(inserted.id, owner);
    if (!row) throw this.missing('batch', inserted.id); // purged the same instant
    return { row, replayed: true };
  }

  /**
   * Every item of one of the client's batches in submission order, read `pageSize` at a time
   * (each with its transaction): a results file of any size in constant memory. Throws
   * (404/410) before the first item when the batch is not there.
   */
  async batchFileItems(owner: string, id: string, pageSize = 5000) {
    const batch = await this.batch(owner, id).load();
    if (!batch) throw this.missing('batch', id);
    const store = this.deps.store;
    const { id: batchId, size } = batch;
    async function* items() {
      for (let from = 0; from < size; from += pageSize) {
        yield* await store.getBatchFileItems({ batchId, owner, from, to: from + pageSize });
      }
    }
    return { batch, items: items() };
  }

  /**
   * Cancels a pending job at once, or a running one (the runner holding it aborts the attempt
   * when it reads the event; its result is discarded); a finished job is refused.
   */
  async cancelJob(owner: string, id: string): Promise<JobRow> {
    const canceled = await byUuid(id, (uuid) => this.deps.store.cancelJob(uuid, owner));
    if (canceled) {
      // A canceled pending job no longer counts against the client's cap.
      if (canceled.previousStatus === 'pending') this.deps.admission.release(owner, 1);
      return canceled.row;
    }
    const row = await this.job(owner, id).load();
    if (!row) throw this.missing('job', id);
    throw new AlreadyFinishedError(row.id, row.status);
  }

  /** The client's jobs newest first (before `beforeSeq`), optionally by status and batch. */
  listJobs(
    owner: string,
    query: { statuses?: JobStatus[]; batchId?: string; beforeSeq?: string; limit: number },
  ): Promise<JobRow[]> {
    return this.deps.store.listJobs({ owner, ...query });
  }

  /** The client's batches newest first (after `after`), each counted per status. */
  listBatches(owner: string, page: { after?: BatchPosition; limit: number }) {
    return this.deps.store.listBatches({ owner, ...page });
  }

  /** What the client's jobs did over the last `buckets` × `bucketSeconds` (GET /stats). */
  activity(owner: string, window: { bucketSeconds: number; buckets: number }) {
    return this.deps.store.clientActivity({ owner, ...window });
  }

  /** Items of one of the client's batches after `afterIndex`, in submission order. */
  async batchItems(
    owner: string,
    id: string,
    page: { afterIndex: number; limit: number },
  ): Promise<{ batch: BatchRow; items: BatchItemRow[] }> {
    const batch = await this.batch(owner, id).load();
    if (!batch) throw this.missing('batch', id);
    const items = await this.deps.store.getBatchItems({ batchId: batch.id, owner, ...page });
    return { batch, items };
  }

  /** Why a job or batch the caller asked for is not there: unknown (404), or expired (410). */
  missing(kind: 'job' | 'batch', id: string) {
    return missing(kind, id, this.deps.jobRetentionMs);
  }

  /** One of the client's jobs. Another client's job is "not found", like a missing one. */
  job(owner: string, id: string): Watched<JobRow> {
    const { store, estimator } = this.deps;
    return {
      kind: 'job',
      id,
      topic: jobTopic(id.toLowerCase()),
      load: () => byUuid(id, (uuid) => store.getJob(uuid, owner)),
      isFinal: (row) => isTerminal(row.status),
      retryAfter: (row) => estimator.forJob(row),
      retryAfterSubmitted: () => estimator.forSubmitted(1),
    };
  }

  /** One of the client's batches. Another client's batch is "not found". */
  batch(owner: string, id: string): Watched<BatchRow> {
    const { store, estimator } = this.deps;
    return {
      kind: 'batch',
      id,
      topic: batchTopic(id.toLowerCase()),
      load: () => byUuid(id, (uuid) => store.getBatch(uuid, owner)),
      isFinal: batchDone,
      retryAfter: (row) => estimator.forBatch(row),
      retryAfterSubmitted: (row) => estimator.forSubmitted(row.pending),
    };
  }

  /**
   * Reads `watched` until `settled` holds, `seconds` pass or `signal` aborts (long-poll);
   * returns the last read (`undefined`: it does not exist).
   */
  wait<Row>(
    watched: Watched<Row>,
    opts: { seconds: number; settled: (row: Row) => boolean; signal?: AbortSignal },
  ): Promise<Row | undefined> {
    return waitFor({
      events: this.deps.events,
      topic: watched.topic,
      waitSeconds: opts.seconds,
      load: () => watched.load(),
      settled: opts.settled,
      signal: opts.signal,
    });
  }
}

/** After an insert that found the key taken: the same body is a replay, another a refusal. */
function checkReplay(
  sent: Idempotency | undefined,
  storedHash: string | null,
  what: 'job' | 'batch',
): void {
  if (sent && storedHash !== sent.requestHash) throw new IdempotencyKeyReusedError(what);
}
