/**
 * The result cache and single-flight: answers by cache key, and the flight naming the job whose
 * attempt computes a key right now.
 */
import type { Knex } from 'knex';
import type { MatchResult } from '../../heuristic/types.js';
import type { Claim } from './rows.js';

export type Flight =
  { role: 'cached'; result: MatchResult } | { role: 'leader' } | { role: 'follower' };

// Before an attempt of a job with a cache key: returns the cached answer if there is one;
// else makes this attempt the key's flight (leader) unless another job's running attempt
// already is (follower: it should hand the job back; the leader's completion completes it).
export async function beginFlight(
  db: Knex,
  opts: { cacheKey: string; claim: Claim },
): Promise<Flight> {
  const res = await db.raw<{
    rows: { cached: MatchResult | null; leader: boolean }[];
  }>(
    `WITH hit AS (
       SELECT result FROM results WHERE cache_key = ? AND expires_at > now()
     ), flight AS (
       INSERT INTO flights (cache_key, job_id, attempts)
       SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM hit)
       ON CONFLICT (cache_key) DO UPDATE SET job_id = excluded.job_id, attempts = excluded.attempts
         WHERE (flights.job_id, flights.attempts) = (excluded.job_id, excluded.attempts)
            OR NOT EXISTS (
              SELECT 1 FROM jobs leader WHERE leader.id = flights.job_id
                AND leader.status = 'running' AND leader.attempts = flights.attempts)
       RETURNING job_id
     )
     SELECT (SELECT result FROM hit) AS cached, EXISTS (SELECT 1 FROM flight) AS leader`,
    [opts.cacheKey, opts.cacheKey, opts.claim.id, opts.claim.attempts],
  );
  const row = res.rows[0];
  if (row?.cached) return { role: 'cached', result: row.cached };
  if (!row?.leader) return { role: 'follower' };
  // The previous leader may have committed its answer (and ended its flight) while this
  // statement waited for the flight row: a new statement sees it. Rare: once per key and TTL.
  const again = await db.raw<{ rows: { result: MatchResult }[] }>(
    `SELECT result FROM results WHERE cache_key = ? AND expires_at > now()`,
    [opts.cacheKey],
  );
  const late = again.rows[0];
  return late ? { role: 'cached', result: late.result } : { role: 'leader' };
}

// Deletes up to `limit` expired cache entries, and flights whose attempt is over (a flight is
// normally removed by its completion; a failed or crashed leader leaves one behind).
export async function purgeExpiredResults(db: Knex, opts: { limit: number }): Promise<number> {
  const res = await db.raw<{ rows: { n: number }[] }>(
    `WITH expired AS (
       DELETE FROM results WHERE cache_key IN (
         SELECT cache_key FROM results WHERE expires_at < now() LIMIT ?)
       RETURNING 1
     ), landed AS (
       DELETE FROM flights f WHERE NOT EXISTS (
         SELECT 1 FROM jobs leader WHERE leader.id = f.job_id
           AND leader.status = 'running' AND leader.attempts = f.attempts)
     )
     SELECT count(*)::int AS n FROM expired`,
    [opts.limit],
  );
  return res.rows[0]?.n ?? 0;
}
