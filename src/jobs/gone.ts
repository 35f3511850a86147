/**
 * Not found, or gone: ids of jobs and batches are UUIDv7 and carry their creation time
 * (src/ids.ts), and nothing is purged before the retention period has passed since it finished
 * (so since it was created). A missing id made longer ago than that is one that expired: it is
 * `GoneError` (410), naming the retention period. Anything else (a v4 id from before UUIDv7, a
 * malformed id, a recent one) is `NotFoundError` (404).
 *
 * The answer depends only on the id, the clock and what the caller may see, so it tells a client
 * nothing about other clients' jobs: another client's old id is gone exactly like a purged one.
 */
import { GoneError, NotFoundError } from '../errors.js';
import { createdAtOf } from '../ids.js';

/**
 * Added to the retention period before an id counts as expired: room for clocks that differ
 * between the process that made the id and the database that purges by `now()`.
 */
export const GONE_MARGIN_MS = 5 * 60 * 1000;

/** Why a `kind` with this id is not there for the caller. */
export function missing(
  kind: 'job' | 'batch',
  id: string,
  retentionMs: number,
  now: number = Date.now(),
): NotFoundError | GoneError {
  const created = createdAtOf(id);
  if (created === undefined || now - created.getTime() <= retentionMs + GONE_MARGIN_MS) {
    return new NotFoundError(kind, id);
  }
  return new GoneError(kind, id, created, retentionMs);
}
