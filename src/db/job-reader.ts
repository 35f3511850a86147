/**
 * Reads of single jobs, coalesced: the reads asked for in the same turn of the event loop go to
 * Postgres as one statement. When a committed group of finished jobs wakes their long-poll
 * waiters together, each waiter reads its job at once; one statement for all of them keeps them
 * from queueing behind one another for the pool's connections. A lone read is the same
 * one-row statement as before.
 */
import type { Knex } from 'knex';
import { getJob, getJobs } from './sql/jobs.js';
import type { JobRow, Owner } from './sql/rows.js';

/** At most this many ids per statement; more wait for the next one. */
const MAX_IDS = 500;

interface Read {
  id: string;
  owner: Owner;
  resolve: (row: JobRow | undefined) => void;
  reject: (err: unknown) => void;
}

export function jobReader(db: Knex): (id: string, owner: Owner) => Promise<JobRow | undefined> {
  const queued: Read[] = [];
  let scheduled = false;

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

  return (id, owner) =>
    new Promise((resolve, reject) => {
      queued.push({ id, owner, resolve, reject });
      schedule();
    });
}
