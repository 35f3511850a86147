/**
 * Reads of single jobs, coalesced: the reads asked for in the same turn of the event loop go to
 * Postgres as one statement. When a committed group of finished jobs wakes their long-poll
 * waiters together, each waiter reads its job at once; one statement for all of them keeps them
 * from queueing behind one another for the pool's connections. A lone read is the same
 * one-row statement as before.
 *
 * Rows this process has just made terminal (its completions, committed) are handed to the
 * reader (`prime`): for a second, reads of them are answered from memory, so the waiters that
 * a completion wakes get their answer without a round trip. A terminal row no longer changes
 * (until the retention purge deletes it, days later).
 */
import type { Knex } from 'knex';
import { getJob, getJobs } from './sql/jobs.js';
import { type JobRow, type Owner, isTerminal } from './sql/rows.js';

/** At most this many ids per statement; more wait for the next one. */
const MAX_IDS = 500;
/** A primed row answers reads for this long... */
const PRIMED_MS = 1000;
/** ...and at most this many are kept (the oldest go first). */
const PRIMED_MAX = 10_000;

export interface JobReader {
  (id: string, owner: Owner): Promise<JobRow | undefined>;
  /** Rows just made terminal by a committed statement of this process. */
  prime(rows: readonly JobRow[]): void;
}

interface Read {
  id: string;
  owner: Owner;
  resolve: (row: JobRow | undefined) => void;
  reject: (err: unknown) => void;
}

export function jobReader(db: Knex): JobReader {
  const queued: Read[] = [];
  let scheduled = false;
  /** In the order primed, so the oldest are first. */
  const primed = new Map<string, { row: JobRow; at: number }>();

  const flush = () => {
    scheduled = false;
    const reads = queued.splice(0, MAX_IDS);
    if (queued.length > 0) schedule();
    if (reads.length === 1) {
      const [read] = reads as [Read];
      getJob(db, read.id, read.owner).then(read.resolve, read.reject);
      return;
    }
    getJobs(db, [...new Set(reads.map((r) => r.id))]).then(
      (rows) => {
        const byId = new Map(rows.map((row) => [row.id, row]));
        for (const read of reads) {
          const row = byId.get(read.id);
          read.resolve(
            row && (read.owner === null || row.client_id === read.owner) ? row : undefined,
          );
        }
      },
      // One bad read must not fail the others: each is tried again on its own.
      () => {
        for (const read of reads) getJob(db, read.id, read.owner).then(read.resolve, read.reject);
      },
    );
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };

  const read = (id: string, owner: Owner): Promise<JobRow | undefined> => {
    const hit = primed.get(id);
    if (hit && performance.now() - hit.at < PRIMED_MS) {
      const { row } = hit;
      return Promise.resolve(owner === null || row.client_id === owner ? row : undefined);
    }
    return new Promise((resolve, reject) => {
      queued.push({ id, owner, resolve, reject });
      schedule();
    });
  };
  return Object.assign(read, {
    prime(rows: readonly JobRow[]) {
      const now = performance.now();
      for (const row of rows) {
        if (!isTerminal(row.status)) continue;
        primed.delete(row.id);
        primed.set(row.id, { row, at: now });
      }
      for (const [id, { at }] of primed) {
        if (primed.size <= PRIMED_MAX && now - at < PRIMED_MS) break;
        primed.delete(id);
      }
    },
  });
}
