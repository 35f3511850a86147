import { expect } from 'chai';
import { createKnex, migrateLatest, migrationsApplied } from '../src/db/knex.js';
import { migrationNames } from '../db/migrations.js';
import { freshDatabase, databaseUrl } from './support/db.js';

describe('migrations', () => {
  it('apply up, down and up again', async () => {
    const db = await freshDatabase();
    try {
      expect(await migrationsApplied(db)).to.equal(true);
      await db.migrate.rollback(undefined, true);
      expect(await db.schema.hasTable('jobs')).to.equal(false);
      expect(await migrationsApplied(db)).to.equal(false);
      expect(await migrateLatest(db)).to.deep.equal([...migrationNames]);
      expect(await db.schema.hasTable('jobs')).to.equal(true);
      expect(await migrationsApplied(db)).to.equal(true);
    } finally {
      await db.destroy();
    }
  });

  it('apply exactly once when several processes start at the same moment', async () => {
    const setup = await freshDatabase();
    await setup.migrate.rollback(undefined, true);
    await setup.schema.dropTableIfExists('knex_migrations');
    await setup.schema.dropTableIfExists('knex_migrations_lock');
    const pools = Array.from({ length: 4 }, () => createKnex(databaseUrl(setup), 2));
    try {
      const applied = await Promise.all(pools.map((db) => migrateLatest(db)));
      expect(applied.flat()).to.deep.equal([...migrationNames]);
      expect(await migrationsApplied(setup)).to.equal(true);
    } finally {
      await Promise.all(pools.map((db) => db.destroy()));
      await setup.destroy();
    }
  });
});
