import { setTimeout as sleep } from 'node:timers/promises';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import parseTimestamptz from 'postgres-date';
import type { Logger } from '../log.js';
import { migrationNames, migrationSource } from '../../db/migrations.js';
import { isTransientDbError } from './transient.js';

/** Bounded waits on the database (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_ACQUIRE_TIMEOUT_MS). */
export interface DbTimeouts {
  /** Postgres cancels a statement running longer (`statement_timeout`). */
  statementMs?: number;
  /** Longest wait for a pool connection, and for a new connection to open. */
  acquireMs?: number;
}

/**
 * How much longer than `statement_timeout` the client waits for an answer before it gives up
 * on the connection: a statement Postgres cancels answers within it, so what runs out is a
 * stalled network or server, not a slow statement.
 */
export const QUERY_TIMEOUT_MARGIN_MS = 1000;

/** `timestamptz`: every timestamp column of this schema. */
const TIMESTAMPTZ_OID = 1184;

/**
 * pg's type parsers, but `timestamptz` read by postgres-date 2 (a character scanner; the version
 * pg-types 4 uses) instead of the postgres-date 1 that pg 8 comes with (regular expressions). The
 * same Date for every value Postgres prints, at well under half the CPU and allocation; a job row
 * has five such columns, and in a drain their parsing was a tenth of the server's allocation
 * (docs/performance.md, "Less allocation per job in the runner"; test/db.types.test.ts).
 */
export const pgTypes = {
  getTypeParser: (oid: number, format: string): unknown =>
    oid === TIMESTAMPTZ_OID && format !== 'binary'
      ? parseTimestamptz
      : pg.types.getTypeParser(oid, format === 'binary' ? 'binary' : 'text'),
};

/** knex settings shared by the service and the knex CLI (knexfile.ts). */
export function knexConfig(
  connectionString: string,
  poolMax = 10,
  timeouts: DbTimeouts = {},
): Knex.Config {
  const { statementMs, acquireMs } = timeouts;
  return {
    client: 'pg',
    connection: {
      connectionString,
      application_name: 'merchant-normalizer',
      types: pgTypes,
      // A dead peer is noticed by TCP keepalive rather than on the next write.
      keepAlive: true,
      ...(statementMs !== undefined && {
        statement_timeout: statementMs,
        query_timeout: statementMs + QUERY_TIMEOUT_MARGIN_MS,
      }),
      ...(acquireMs !== undefined && { connectionTimeoutMillis: acquireMs }),
    },
    ...(acquireMs !== undefined && { acquireConnectionTimeout: acquireMs }),
    pool: {
      min: 0,
      max: poolMax,
      afterCreate: (conn: pg.Client, done: (err: Error | null, conn: pg.Client) => void) => {
        closeOnReadTimeout(conn);
        // This process announces the events it writes after the commit (src/jobs/events.ts);
        // the trigger kept for older versions must not NOTIFY inside its transactions (0010).
        // No JIT: its threshold is the planner's cost estimate, and the claim's estimate is
        // inflated (by stale statistics, or the generic plan's unknown LIMITs) past it, so a
        // claim of 16 rows spent 575 ms compiling (docs/performance-log.md, "What the 600 ms was").
        conn.query(`SET merchant.events_announced = 'after_commit'; SET jit = off`).then(
          () => done(null, conn),
          (err: Error) => done(err, conn),
        );
      },
    },
    migrations: { migrationSource, tableName: 'knex_migrations' },
  };
}

/** pg's error when `query_timeout` passes without an answer. */
const READ_TIMEOUT = 'Query read timeout';

/**
 * When pg gives up waiting for an answer (`query_timeout`), the query is still in flight on
 * its connection and the next query would queue behind it. Close the connection instead: knex
 * then drops it from the pool, and what the stalled server has not received yet never runs.
 * pg's `query` takes a callback (knex) or returns a promise (db/prepared.ts); both are watched.
 */
function closeOnReadTimeout(conn: pg.Client): void {
  const query = conn.query.bind(conn) as (...args: unknown[]) => unknown;
  const check = (err: unknown) => {
    if (err instanceof Error && err.message === READ_TIMEOUT) {
      // pg's socket (`connection.stream`) is not in its typings.
      (
        conn as unknown as { connection: { stream: { destroy(): void } } }
      ).connection.stream.destroy();
    }
  };
  const watched = (...args: unknown[]): unknown => {
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      args[last] = (err: unknown, res: unknown) => {
        check(err);
        (callback as (err: unknown, res: unknown) => void)(err, res);
      };
      return query(...args);
    }
    const result = query(...args);
    if (result instanceof Promise) result.catch(check);
    return result;
  };
  conn.query = watched as typeof conn.query;
}

/**
 * A pool; knex's own warnings (failed connection attempts, ...) go to `log` as JSON lines.
 * Without `timeouts`, statements may run and wait as long as they take (migrations, CLI).
 */
export function createKnex(
  connectionString: string,
  poolMax = 10,
  log?: Logger,
  timeouts: DbTimeouts = {},
): Knex {
  const config = knexConfig(connectionString, poolMax, timeouts);
  if (log) {
    const to = (level: 'warn' | 'error' | 'debug') => (message: unknown) =>
      log[level]({ knex: message instanceof Error ? message.message : message }, 'knex');
    config.log = {
      warn: to('warn'),
      error: to('error'),
      deprecate: to('warn'),
      debug: to('debug'),
    };
  }
  return knexFactory(config);
}

/**
 * Start-up: waits until the database answers, retrying what may pass (connection refused or
 * reset, the server starting up: isTransientDbError) with backoff from 0.25 s doubling to 5 s,
 * for up to `waitMs`, logging each failed try. Anything else (a wrong password, an unknown
 * database) fails at once: waiting would not help.
 */
export async function waitForDatabase(
  db: Knex,
  opts: { waitMs: number; log: Logger },
): Promise<void> {
  const deadline = performance.now() + opts.waitMs;
  for (let attempt = 1, delay = 250; ; attempt++, delay = Math.min(delay * 2, 5000)) {
    try {
      await db.raw('SELECT 1');
      if (attempt > 1) opts.log.info({ attempt }, 'database reachable');
      return;
    } catch (err) {
      const left = Math.round(deadline - performance.now());
      if (!isTransientDbError(err) || left <= 0) throw err;
      const retryInMs = Math.min(delay, left);
      opts.log.warn(
        { attempt, retryInMs, giveUpInMs: left, error: (err as Error).message },
        'database unreachable at start-up; retrying',
      );
      await sleep(retryInMs);
    }
  }
}

// Arbitrary constant identifying "merchant-normalizer migrations" among advisory locks.
const MIGRATION_LOCK_KEY = 7_263_310_419;

interface PgConnection {
  query(sql: string, values?: unknown[]): Promise<unknown>;
}

/** How a database's applied migrations compare with the ones this build knows. */
export interface MigrationState {
  /** Known to this build, not applied yet. */
  missing: string[];
  /** Applied, but unknown to this build: a newer version migrated this database. */
  unknown: string[];
}

/** Reads which migrations are applied (none when there is no migrations table yet). */
export async function migrationState(db: Knex): Promise<MigrationState> {
  const exists = await db.schema.hasTable('knex_migrations');
  const rows = exists ? await db('knex_migrations').select<{ name: string }[]>('name') : [];
  const applied = new Set(rows.map((r) => r.name));
  const known = new Set(migrationNames);
  return {
    missing: migrationNames.filter((name) => !applied.has(name)),
    unknown: [...applied].filter((name) => !known.has(name)).sort(),
  };
}

/**
 * Applies pending migrations. Several processes may start at once against one database, and
 * knex's own lock makes the loser fail rather than wait, so migrators queue on a session-level
 * advisory lock first; the lock is released when the session ends, even if this process dies.
 *
 * A database a newer version has migrated (rolling back, or two versions side by side during a
 * deploy) holds migrations this build does not know. Migrations are additive (see README,
 * "Decisions"), so this build runs on it as long as every migration it knows is applied: it
 * applies nothing, warns, and /readyz reports it. If one it knows is missing as well, the
 * database took another path than this build's: it refuses to start.
 */
export async function migrateLatest(db: Knex, log?: Logger): Promise<string[]> {
  // knex has no public API for pinning one pooled connection; these two are what knex's own
  // transaction code uses.
  const client = db.client as {
    acquireConnection(): Promise<PgConnection>;
    releaseConnection(conn: PgConnection): Promise<void>;
  };
  const conn = await client.acquireConnection();
  try {
    await lockForMigrations(conn, log);
    try {
      const { missing, unknown } = await migrationState(db);
      if (unknown.length > 0) {
        if (missing.length > 0) throw new DivergedMigrationsError(missing, unknown);
        log?.warn(
          { unknownMigrations: unknown },
          'the database has migrations this version does not know (a newer version applied ' +
            'them); starting, as every migration this version needs is applied',
        );
        return [];
      }
      // Nothing to apply (every start but the first of a version): knex's own round of
      // table checks, reads and locking is skipped.
      if (missing.length === 0) return [];
      await freeLeftoverKnexLock(db, log);
      const [, applied] = (await db.migrate.latest()) as [number, string[]];
      return applied;
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await client.releaseConnection(conn);
  }
}

/**
 * knex keeps a lock row of its own (`knex_migrations_lock`). For migrations that run outside a
 * transaction (CREATE INDEX CONCURRENTLY: 0011, 0012, 0013) it sets that row in a transaction of its
 * own, committed at once, and clears it at the end; a process killed in between leaves it set,
 * and knex then refuses every later start ("Migration table is already locked"), so the service
 * would never start again without `knex migrate:unlock` by hand. The caller holds the advisory
 * lock, so no other process of this service is migrating: a set row is such a leftover, freed
 * here. (A `knex migrate:latest` run by hand does not take the advisory lock: do not run one
 * while the service starts.)
 */
async function freeLeftoverKnexLock(db: Knex, log?: Logger): Promise<void> {
  if (!(await db.schema.hasTable('knex_migrations_lock'))) return;
  const row = await db('knex_migrations_lock').first<{ is_locked: number } | undefined>(
    'is_locked',
  );
  if (!row?.is_locked) return;
  // The index build of a killed start goes on in Postgres without its client until it ends;
  // so would one of a process migrating through a pooler in transaction mode, where the
  // advisory lock holds nothing (docs/operations.md). Freeing the lock under either would
  // build or drop the same index twice at once: wait for them to end first.
  await pollUntil(
    async () => !(await indexBuildRunning(db)),
    () => log?.info('an index build of an earlier start is still running; waiting for it'),
  );
  log?.warn(
    'a migration was interrupted (knex_migrations_lock was left set); freeing it and migrating again',
  );
  await db.migrate.forceFreeMigrationsLock();
}

/** Another session of this database is building or dropping an index CONCURRENTLY. */
async function indexBuildRunning(db: Knex): Promise<boolean> {
  const res = await db.raw<{ rows: unknown[] }>(
    `SELECT 1 FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
       AND query ~* '^\\s*(CREATE|DROP)\\s+(UNIQUE\\s+|)INDEX\\s+CONCURRENTLY'`,
  );
  return res.rows.length > 0;
}

/**
 * Takes the migration lock, trying again every 100 ms rather than waiting in
 * `pg_advisory_lock`: a session blocked in a statement holds a snapshot, and CREATE INDEX
 * CONCURRENTLY (migration 0011) waits for every older snapshot to go, so the lock holder's index
 * build and the processes queued behind it would wait on each other forever.
 */
async function lockForMigrations(conn: PgConnection, log?: Logger): Promise<void> {
  await pollUntil(
    async () => {
      const res = (await conn.query('SELECT pg_try_advisory_lock($1) AS locked', [
        MIGRATION_LOCK_KEY,
      ])) as { rows: { locked: boolean }[] };
      return res.rows[0]?.locked === true;
    },
    () => log?.info('another process is migrating the database; waiting for it'),
  );
}

/** Runs `done` every 100 ms until it holds; calls `waiting` once, the first time it does not. */
async function pollUntil(done: () => Promise<boolean>, waiting: () => void): Promise<void> {
  let told = false;
  while (!(await done())) {
    if (!told) waiting();
    told = true;
    await sleep(100);
  }
}

/** The database has migrations this build does not know and lacks some it needs. */
export class DivergedMigrationsError extends Error {
  constructor(
    readonly missing: string[],
    readonly unknown: string[],
  ) {
    super(
      `The database has migrations this version does not know (${unknown.join(', ')}) and ` +
        `lacks ones it needs (${missing.join(', ')}): it was migrated along another line of ` +
        'versions. Start a version that knows all of its migrations.',
    );
    this.name = 'DivergedMigrationsError';
  }
}

/** True when every migration this build knows has been applied (readiness). */
export async function migrationsApplied(db: Knex): Promise<boolean> {
  return (await migrationState(db)).missing.length === 0;
}
