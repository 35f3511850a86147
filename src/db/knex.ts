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
 * Applies pending migrations. Several processes may start at once against one database: knex
 * serialises them on its lock row, but the loser of a race to create knex's own tables, or to
 * take the lock, gets an error instead of waiting; those are retried, and the retry finds the
 * migrations applied.
 */
export async function migrateLatest(db: Knex, attempts = 20): Promise<string[]> {
  for (let i = 1; ; i++) {
    try {
      const [, applied] = (await db.migrate.latest()) as [number, string[]];
      return applied;
    } catch (err) {
      const message = err instanceof Error ? err.message : '';
      const raced = /already locked|already exists|duplicate key/i.test(message);
      if (!raced || i >= attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
    }
  }
}

/** True when every migration this build knows has been applied (readiness). */
export async function migrationsApplied(db: Knex): Promise<boolean> {
  const rows = await db('knex_migrations').select<{ name: string }[]>('name');
  const applied = new Set(rows.map((r) => r.name));
  return migrationNames.every((name) => applied.has(name));
}
