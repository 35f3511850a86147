import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { migrationNames, migrationSource } from '../../db/migrations.js';

// Return timestamps as Date (the default) and int8 counts as numbers: every count this service
// reads (jobs per status, queue depth) fits in a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => Number(value));

/** knex settings shared by the service and the knex CLI (knexfile.ts). */
export function knexConfig(connectionString: string, poolMax = 10): Knex.Config {
  return {
    client: 'pg',
    connection: { connectionString, application_name: 'merchant-normalizer' },
    pool: { min: 0, max: poolMax },
    migrations: { migrationSource, tableName: 'knex_migrations' },
  };
}

export function createKnex(connectionString: string, poolMax = 10): Knex {
  return knexFactory(knexConfig(connectionString, poolMax));
}

/**
 * Applies pending migrations. knex takes an advisory lock on its lock table, so several
 * processes starting at once against one database apply each migration exactly once.
 */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest()) as [number, string[]];
  return applied;
}

/** True when every migration this build knows has been applied (readiness). */
export async function migrationsApplied(db: Knex): Promise<boolean> {
  const rows = await db('knex_migrations').select<{ name: string }[]>('name');
  const applied = new Set(rows.map((r) => r.name));
  return migrationNames.every((name) => applied.has(name));
}
