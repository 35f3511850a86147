/**
 * Reading a statement's plan as the service runs it: `EXPLAIN (ANALYZE, FORMAT JSON)` of the
 * statement prepared with its bindings, under a chosen `plan_cache_mode`, rolled back.
 */
import type { Knex } from 'knex';
import pg from 'pg';

/** One plan node of `EXPLAIN (ANALYZE, FORMAT JSON)`, with the fields read here. */
export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

export function* planNodes(node: PlanNode): Generator<PlanNode> {
  yield node;
  for (const child of node.Plans ?? []) yield* planNodes(child);
}

/** A plan node that reads rows of `jobs` (a scan, not the update writing them). */
export const readsJobs = (n: PlanNode) =>
  n['Relation Name'] === 'jobs' && n['Node Type'] !== 'ModifyTable';

/** Rows a node read: those it returned and those it read and dropped. */
export const rowsRead = (n: PlanNode) =>
  (n['Actual Rows'] +
    (n['Rows Removed by Filter'] ?? 0) +
    (n['Rows Removed by Index Recheck'] ?? 0)) *
  n['Actual Loops'];

/** A binding written as an SQL literal (a flat array as a Postgres array literal). */
type Scalar = string | number | boolean | null;

function literal(value: Scalar | readonly Scalar[]): string {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === null) return 'NULL';
  if (typeof value === 'string') return pg.escapeLiteral(value);
  const element = (e: Scalar) =>
    e === null ? 'NULL' : `"${String(e).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return pg.escapeLiteral(`{${value.map(element).join(',')}}`);
}

/**
 * `sql` (knex `?` placeholders) with `bindings` as `PREPARE under_test` takes it, and the
 * `EXECUTE under_test(...)` that runs it with those values.
 */
function underTest(db: Knex, sql: string, bindings: readonly unknown[]) {
  const native = db
    .raw(sql, bindings as Knex.RawBinding[])
    .toSQL()
    .toNative();
  const values = (native.bindings as (Scalar | Scalar[])[]).map(literal).join(', ');
  return {
    prepare: `PREPARE under_test AS ${native.sql}`,
    execute: `EXECUTE under_test(${values})`,
  };
}

/** The top plan node of `EXPLAIN (ANALYZE, FORMAT JSON)` of `execute`. */
async function explained(db: Knex, execute: string): Promise<PlanNode> {
  const res = await db.raw<{ rows: { 'QUERY PLAN': { Plan: PlanNode }[] }[] }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) ${execute}`,
  );
  return res.rows[0]!['QUERY PLAN'][0]!.Plan;
}

/**
 * Runs `sql` (knex `?` placeholders) with `bindings` under EXPLAIN ANALYZE, prepared as the
 * service prepares its statements, with `planCacheMode` choosing between a plan made for these
 * values and the generic one a plan cache may keep; in a transaction rolled back. `db` must have
 * one connection, so the transaction and the PREPARE stay on it. Returns the top plan node.
 */
export async function explainPrepared(
  db: Knex,
  sql: string,
  bindings: readonly unknown[],
  planCacheMode: 'force_custom_plan' | 'force_generic_plan',
): Promise<PlanNode> {
  const { prepare, execute } = underTest(db, sql, bindings);
  await db.raw('BEGIN');
  try {
    await db.raw(`SET LOCAL plan_cache_mode = ${planCacheMode}`);
    await db.raw(prepare);
    return await explained(db, execute);
  } finally {
    await db.raw('ROLLBACK');
    await db.raw('DEALLOCATE ALL');
  }
}

/**
 * The plan a statement prepared as the service prepares it gets after it has already run `runs`
 * times (a plan cache may keep a generic plan by then) and `meanwhile` has changed the tables:
 * `EXPLAIN (ANALYZE, FORMAT JSON)` of its next run, under the session's own `plan_cache_mode`.
 * Every run is rolled back. `db` must have one connection. Returns the top plan node.
 */
export async function explainAfterRuns(
  db: Knex,
  sql: string,
  bindings: readonly unknown[],
  runs: number,
  meanwhile: () => Promise<void>,
): Promise<PlanNode> {
  const { prepare, execute } = underTest(db, sql, bindings);
  const rolledBack = async <T>(run: () => Promise<T>): Promise<T> => {
    await db.raw('BEGIN');
    try {
      return await run();
    } finally {
      await db.raw('ROLLBACK');
    }
  };
  await db.raw(prepare);
  try {
    for (let i = 0; i < runs; i++) await rolledBack(() => db.raw(execute));
    await meanwhile();
    return await rolledBack(() => explained(db, execute));
  } finally {
    await db.raw('DEALLOCATE under_test');
  }
}
