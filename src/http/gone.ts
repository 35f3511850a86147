/**
 * `404 Not Found` or `410 Gone` for a job or batch id that is not there. Ids are UUIDv7 and
 * carry their creation time (ids.ts), and nothing is purged before the retention period has
 * passed since it finished (so since it was created): a missing id created longer ago than
 * that is one that expired, and is answered `410` naming the retention period. Anything else
 * (a v4 id from before UUIDv7, a malformed id, a recent one) is `404`.
 *
 * The answer depends only on the id, the clock and what the caller may see, so it tells a client
 * nothing about other clients' jobs: another client's old id is `410` exactly like a purged one.
 */
import { createdAtOf } from '../ids.js';
import { HttpProblem, PROBLEM_TYPES, notFound } from './problem.js';

/**
 * Added to the retention period before an id counts as expired: room for clocks that differ
 * between the process that made the id and the database that purges by `now()`.
 */
export const GONE_MARGIN_MS = 5 * 60 * 1000;

const DAY_MS = 24 * 60 * 60 * 1000;

/** "7 days", "1 day", "1.5 days". */
export function retentionText(retentionMs: number): string {
  const days = Math.round((retentionMs / DAY_MS) * 100) / 100;
  return `${days} day${days === 1 ? '' : 's'}`;
}

/** The problem for a `what` with this id that the caller cannot see (any more). */
export function missing(
  what: 'job' | 'batch',
  id: string,
  retentionMs: number,
  now: number = Date.now(),
): HttpProblem {
  const created = createdAtOf(id);
  if (created === undefined || now - created.getTime() <= retentionMs + GONE_MARGIN_MS) {
    return notFound(`No ${what} with id "${id}".`);
  }
  const Kind = what === 'job' ? 'Job' : 'Batch';
  const retention = retentionText(retentionMs);
  return new HttpProblem(
    410,
    PROBLEM_TYPES.gone,
    'Gone',
    `${Kind} ${id} was created at ${created.toISOString()}, longer ago than the retention ` +
      `period of ${retention}: finished ${what}s are deleted ${retention} after they finish, ` +
      `so its results are no longer available.`,
    undefined,
    {},
    { retention_days: Math.round((retentionMs / DAY_MS) * 100) / 100 },
  );
}
