/**
 * The planner's view of the busiest tables, kept from saying "empty" about a table that is not.
 *
 * After VACUUM or ANALYZE of a table with no live rows, `pg_class` says 0 rows, and the planner
 * takes the table for empty whatever its size: a prepared statement run a few times then may
 * cache a generic plan that scans `jobs` whole, and keeps using it as the table fills, until the
 * next ANALYZE invalidates it. Autovacuum gets there within its naptime
 * (a minute); a burst of submits gets there first: with 35,000 jobs, each claim read the table
 * 142 times over (400 ms) and the runner fell behind by half the burst (docs/performance.md).
 * A table never analyzed is not affected: the planner assumes at least ten pages for it (from
 * PostgreSQL 14, where `reltuples` is -1 until then; on 13 such a table is analyzed too, which is
 * harmless).
 */
import type { Knex } from 'knex';

/** The tables checked: those read by the hot prepared statements (claim, outcomes, reads). */
const TABLES = ['jobs', 'job_events'] as const;

/**
 * From this many live rows on, a table the statistics call empty is analyzed: fewer fit in the
 * ten pages the planner assumes of a table never analyzed, and scanning them is cheap.
 */
const MIN_LIVE_ROWS = 500;

/**
 * ANALYZEs each of TABLES whose statistics say empty (`reltuples` 0) while the cumulative
 * statistics count at least MIN_LIVE_ROWS live rows in it (they follow inserts and deletes within
 * about a second), which refreshes them and makes every session replan its statements on that
 * table. Only tables this role may analyze (it owns them) are looked at. A table another session
 * is analyzing or vacuuming is skipped (it is being refreshed); ANALYZE only warns then, so what
 * was analyzed is read back. Returns the tables analyzed. One catalog read when there is nothing
 * to do; a table that stays empty is not analyzed again (ANALYZE resets the live-row count).
 */
export async function refreshEmptyStatistics(db: Knex): Promise<string[]> {
  const empty = (names: readonly string[]) =>
    db.raw<{ rows: { name: (typeof TABLES)[number] }[] }>(
      `SELECT s.relname AS name FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
       WHERE s.relid = ANY (?::regclass[]) AND c.reltuples = 0 AND s.n_live_tup >= ?
         AND pg_has_role(c.relowner, 'USAGE')`,
      [[...names], MIN_LIVE_ROWS],
    );
  const found = (await empty(TABLES)).rows.map((r) => r.name);
  if (found.length === 0) return [];
  for (const name of found) {
    // `name` is one of TABLES (matched by oid above), not text from outside.
    if (TABLES.includes(name)) await db.raw(`ANALYZE (SKIP_LOCKED) ${name}`);
  }
  const still = new Set((await empty(found)).rows.map((r) => r.name));
  return found.filter((name) => !still.has(name));
}
