import knexFactory, { type Knex } from 'knex';
import type { Logger } from '../log.js';
import { migrationNames, migrationSource } from '../../db/migrations.js';

/** knex settings shared by the service and the knex CLI (knexfile.ts). */
export function knexConfig(connectionString: string, poolMax = 10): Knex.Config {
  return {
    client: 'pg',
    connection: { connectionString, application_name: 'merchant-normalizer' },
    pool: { min: 0, max: poolMax },
    migrations: { migrationSource, tableName: 'knex_migrations' },
  };
}

/** A pool; knex's own warnings (failed connection attempts, ...) go to `log` as JSON lines. */
export function createKnex(connectionString: string, poolMax = 10, log?: Logger): Knex {
  const config = knexConfig(connectionString, poolMax);
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

// Arbitrary constant identifying "merchant-normalizer migrations" among advisory locks.
const MIGRATION_LOCK_KEY = 7_263_310_419;

interface PgConnection {
  query(sql: string, values?: unknown[]): Promise<unknown>;
}

/**
 * Applies pending migrations. Several processes may start at once against one database, and
 * knex's own lock makes the loser fail rather than wait, so migrators queue on a session-level
 * advisory lock first; the lock is released when the session ends, even if this process dies.
 */
export async function migrateLatest(db: Knex): Promise<string[]> {
  // knex has no public API for pinning one pooled connection; these two are what knex's own
  // transaction code uses.
  const client = db.client as {
    acquireConnection(): Promise<PgConnection>;
    releaseConnection(conn: PgConnection): Promise<void>;
  };
  const conn = await client.acquireConnection();
  try {
    await conn.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const [, applied] = (await db.migrate.latest()) as [number, string[]];
      return applied;
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await client.releaseConnection(conn);
  }
}

/** True when every migration this build knows has been applied (readiness). */
export async function migrationsApplied(db: Knex): Promise<boolean> {
  const rows = await db('knex_migrations').select<{ name: string }[]>('name');
  const applied = new Set(rows.map((r) => r.name));
  return migrationNames.every((name) => applied.has(name));
}
