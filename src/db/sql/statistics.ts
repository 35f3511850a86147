/**
 * The planner's view of the busiest tables, kept from describing a table far smaller than it is.
 *
 * A prepared statement run a few times may cache a generic plan, made for the table as its
 * statistics and its size were then, and keep using it until the next ANALYZE invalidates it.
 * After VACUUM or ANALYZE of an empty `jobs` (`reltuples` 0: the planner takes it for empty,
 * whatever its size), or of one holding a few rows, that plan scans `jobs` whole, and goes on
 * scanning it as the table fills. Autovacuum gets to the ANALYZE within its naptime (a minute); a
 * burst of submits gets there first: with 35,000 jobs, each claim read the table 142 times over
 * (400 ms) and the runner fell behind by half the burst (docs/performance-log.md, "Statistics that
 * call a filled table empty").
 */
import type { Knex } from 'knex';

/** The tables checked: those read by the hot prepared statements (claim, outcomes, reads). */
const TABLES = ['jobs', 'job_events'] as const;

/** A table is analyzed once it holds this many times the rows its statistics say... */
const GROWTH = 10;
/** ...and at least this many: fewer fit in a few pages, and scanning them is cheap. */
const MIN_LIVE_ROWS = 500;

/**
 * ANALYZEs each of TABLES that the cumulative statistics (which follow inserts and deletes within
 * about a second) count at least MIN_LIVE_ROWS live rows in, and GROWTH times what its planner
 * statistics (`reltuples`: 0 after an ANALYZE of the empty table, -1 before any) say. That
 * refreshes them and makes every session replan its statements on that table. Only tables this
 * role may analyze (it owns them) are looked at. A table another session is analyzing or
 * vacuuming is skipped (it is being refreshed); ANALYZE only warns then, so what was analyzed is
 * read back. Returns the tables analyzed. One catalog read when there is nothing to do; a table
 * is analyzed again only once it has grown GROWTH times more.
 */
export async function refreshOutgrownStatistics(db: Knex): Promise<string[]> {
  const outgrown = (names: readonly string[]) =>
    db.raw<{ rows: { name: (typeof TABLES)[number] }[] }>(
      `SELECT s.relname AS name FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
       WHERE s.relid = ANY (?::regclass[]) AND s.n_live_tup >= ?
         AND s.n_live_tup >= ? * greatest(c.reltuples, 1)
         AND pg_has_role(c.relowner, 'USAGE')`,
      [[...names], MIN_LIVE_ROWS, GROWTH],
    );
  const found = (await outgrown(TABLES)).rows.map((r) => r.name);
  if (found.length === 0) return [];
  for (const name of found) {
    // `name` is one of TABLES (matched by oid above), not text from outside.
    if (TABLES.includes(name)) await db.raw(`ANALYZE (SKIP_LOCKED) ${name}`);
  }
  const still = new Set((await outgrown(found)).rows.map((r) => r.name));
  return found.filter((name) => !still.has(name));
}
