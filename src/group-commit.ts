import { isTransientDbError } from './db/transient.js';

/**
 * Group commit: callers submit one item each and get its own result back, while the items are
 * written together. Idle, a write starts once the code that submitted the first item has run to
 * its end, the promise callbacks it set off included (no timer, no turn of the event loop), so
 * items submitted together go in one write: the outcomes of a claim's fast jobs, which all finish
 * in one burst of promise callbacks, are one statement. Started at the first item, a write
 * carried that item alone and the rest of the burst waited for it (half of a drain's completing
 * statements had one job each). Items arriving during a write form the next one; under load, one
 * statement carries as many items as arrived while the previous one ran.
 */
export class GroupCommit<I, O> {
  private queue: { item: I; resolve: (out: O) => void; reject: (err: unknown) => void }[] = [];
  private writing = false;
  /** A write is due once the current callbacks have run (`submit`). */
  private scheduled = false;

  constructor(
    /** Writes `items`; returns one result per item, in order. */
    private readonly write: (items: I[]) => Promise<O[]>,
    private readonly maxItems = 500,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.writing || this.scheduled) return;
      this.scheduled = true;
      // `process.nextTick` queued from a microtask runs once the microtask queue is empty; from
      // a callback of the event loop it would run before the microtasks that callback queued. So
      // it is queued from a microtask, whichever called `submit`.
      queueMicrotask(this.scheduleWrite);
    });
  }

  private readonly scheduleWrite = () => process.nextTick(this.startWrite);

  private readonly startWrite = () => {
    this.scheduled = false;
    void this.drain();
  };

  /** Only `startWrite` calls this, and only one is scheduled while nothing is being written. */
  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxItems);
        try {
          const out = await this.write(group.map((g) => g.item));
          group.forEach((g, i) => g.resolve(out[i] as O));
        } catch (err) {
          for (const g of group) g.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }
}

/** One item's answer from `writeApartOnError`: its result, or its own error. */
export type ItemResult<O> = { row: O } | { error: unknown };

/**
 * For a group commit (GroupCommit's `write`): writes the items together; if that fails with an
 * error that is not transient (one item a constraint or trigger refuses), writes each item on
 * its own, so each gets its own result or error and one bad item does not fail the rest. Only
 * a transient error rejects (the whole group, for the callers to retry).
 */
export function writeApartOnError<I, O>(
  write: (items: I[]) => Promise<O[]>,
  /** Told when a group is written apart: a statement that keeps failing shows up in the log. */
  onSplit?: (err: unknown, items: number) => void,
): (items: I[]) => Promise<ItemResult<O>[]> {
  return async (items) => {
    try {
      return (await write(items)).map((row) => ({ row }));
    } catch (err) {
      if (isTransientDbError(err)) throw err;
      if (items.length === 1) return [{ error: err }];
      onSplit?.(err, items.length);
      return Promise.all(
        items.map((item) =>
          write([item]).then(
            ([row]) => ({ row: row as O }),
            (error: unknown) => ({ error }),
          ),
        ),
      );
    }
  };
}
