import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import pg from 'pg';
import { ensureClient } from '../../src/db/sql/clients.js';
import { createKnex } from '../../src/db/knex.js';
import type { JobRow } from '../../src/db/sql/rows.js';
import { announcePending, insertJob } from '../../src/db/sql/submits.js';
import { createLogger } from '../../src/log.js';
import { tx } from './heuristics.js';

/**
 * The Postgres server the tests run on (set by the global fixture). Tests never use the
 * database it names: each gets its own from `freshDatabase`.
 */
function serverUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests through mocha (npm test)');
  return url;
}

/** The server's URL with another database name. */
export function withDatabase(name: string): string {
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Test databases are named `mnt_<pid of the process running the test>_<n>`; the template is
 * `mnt_<pid of the mocha process>_tpl`, made by the global fixture and named to the processes
 * that run test files (`mocha --parallel` workers too) through TEST_TEMPLATE_DATABASE.
 */
const PREFIX = 'mnt_';
export const templateName = () =>
  process.env.TEST_TEMPLATE_DATABASE ?? `${PREFIX}${process.pid}_tpl`;
let created = 0;

let admin: pg.Client | undefined;
let adminQueue: Promise<unknown> = Promise.resolve();

/** Runs one statement on the server's own database (CREATE/DROP DATABASE), one at a time. */
export function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
): Promise<pg.QueryResult<R>> {
  const run = adminQueue.then(async () => {
    if (!admin) {
      admin = new pg.Client({ connectionString: serverUrl(), application_name: 'mnt-admin' });
      admin.on('error', () => (admin = undefined)); // the next statement reconnects
      await admin.connect();
    }
    return admin.query<R>(sql);
  });
  adminQueue = run.catch(() => undefined);
  return run;
}

export async function dropDatabase(name: string): Promise<void> {
  await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}

/**
 * Drops test databases left behind: those of mocha process `pid` (and then closes the admin
 * connection), or (without it) those of processes no longer running (a run that was killed
 * before its teardown).
 */
export async function dropLeftovers(pid?: number): Promise<void> {
  const res = await adminQuery<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE '${PREFIX}%' ORDER BY datname`,
  );
  for (const { datname } of res.rows) {
    const owner = Number(/^mnt_(\d+)_/.exec(datname)?.[1]);
    if (!Number.isInteger(owner)) continue;
    const mine = pid !== undefined && owner === pid;
    if (mine || (pid === undefined && !alive(owner))) await dropDatabase(datname);
  }
  if (pid !== undefined) {
    await admin?.end();
    admin = undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const urls = new WeakMap<Knex, string>();

/**
 * A database of this test's own, cloned from the migrated template, and a pool on it.
 * `destroy()` closes the pool and drops the database (ending any connection still open to it,
 * such as a killed server's).
 */
export async function freshDatabase(poolMax = 10): Promise<Knex> {
  const name = `${PREFIX}${process.pid}_${++created}`;
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${templateName()}"`);
  const url = withDatabase(name);
  const db = createKnex(url, poolMax, createLogger('warn'));
  urls.set(db, url);
  const destroy = db.destroy.bind(db);
  let dropped: Promise<void> | undefined;
  // knex defines `destroy` read-only but configurable.
  Object.defineProperty(db, 'destroy', {
    value: () => (dropped ??= destroy().then(() => dropDatabase(name))),
  });
  return db;
}

/** The connection string of a database made by `freshDatabase`: for servers, notifiers, CLIs. */
export function databaseUrl(db: Knex): string {
  const url = urls.get(db);
  if (!url) throw new Error('not a database from freshDatabase()');
  return url;
}

/** Rows in `table` (jobs, batches) right now. */
export async function rowCount(db: Knex, table: string): Promise<number> {
  return Number((await db(table).count<{ count: number }[]>('*'))[0]?.count);
}

export async function jobStatuses(db: Knex): Promise<Record<string, number>> {
  const rows = await db('jobs')
    .select('status')
    .count<{ status: string; count: number }[]>('* as count')
    .groupBy('status');
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.count)]));
}

/** The oid of index `name` (as text), or null when there is none. */
export async function indexOid(db: Knex, name: string): Promise<string | null> {
  const { rows } = await db.raw<{ rows: [{ oid: string | null }] }>(
    'SELECT to_regclass(?)::oid::text AS oid',
    [name],
  );
  return rows[0].oid;
}

/**
 * Backends of `db`'s database waiting right now: on wait event `event` ('PgSleep': a statement
 * in `pg_sleep`) or on any of wait type `type` ('Lock').
 */
export async function backendsWaiting(
  db: Knex,
  wait: { event: string } | { type: string },
): Promise<number> {
  const [column, value] =
    'event' in wait ? ['wait_event', wait.event] : ['wait_event_type', wait.type];
  const { rows } = await db.raw<{ rows: [{ n: number }] }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND ${column} = ?`,
    [value],
  );
  return rows[0].n;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The id of client `name`, created if needed. */
export async function clientId(db: Knex, name = 'a'): Promise<string> {
  return (await ensureClient(db, name)).id;
}

/**
 * `n` jobs of client `name` inserted in one statement (as a huge batch would be), described
 * "`describe` 1" to "`describe` n": pending, or succeeded (finished now). No announcement.
 */
export async function insertJobs(
  db: Knex,
  name: string,
  n: number,
  opts: { status?: 'pending' | 'succeeded'; describe?: string } = {},
): Promise<void> {
  const { status = 'pending', describe = 'backlog' } = opts;
  const finished = status === 'succeeded';
  await db.raw(
    `INSERT INTO jobs (id, client_id, transaction, max_attempts, status, result, finished_at)
     SELECT gen_random_uuid(), ?, jsonb_build_object(
       'date', '2026-04-03', 'description', ? || ' ' || i, 'amount', i), 3, ?,
       CASE WHEN ? THEN '{"merchant": null}'::jsonb END, CASE WHEN ? THEN now() END
     FROM generate_series(1, ?) AS i`,
    [await clientId(db, name), describe, status, finished, finished, n],
  );
}

/**
 * A pending job inserted straight into the table and announced, as another process would (no
 * local wake-up, a NOTIFY); it belongs to client "a" unless another client is named.
 */
export async function insertPending(
  db: Knex,
  description: string,
  maxAttempts = 3,
  client = 'a',
): Promise<JobRow> {
  const owner = await clientId(db, client);
  const { row } = await insertJob(db, {
    id: randomUUID(),
    clientId: owner,
    transaction: tx(description),
    maxAttempts,
  });
  // As a submitting process does once the insert committed: runners everywhere hear of it.
  await announcePending(db);
  return row;
}

/** Counts the connections `db`'s pool hands out from now on: one per statement sent. */
export function countAcquisitions(db: Knex): { count: number } {
  const client = db.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  const counter = { count: 0 };
  client.acquireConnection = () => {
    counter.count++;
    return acquire();
  };
  return counter;
}
