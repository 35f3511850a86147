import { expect } from 'chai';
import type { Knex } from 'knex';
import { pino } from 'pino';
import supertest from 'supertest';
import { issueKey } from '../src/auth/keys.js';
import {
  DivergedMigrationsError,
  createKnex,
  migrateLatest,
  migrationState,
  migrationsApplied,
} from '../src/db/knex.js';
import { type Logger, createLogger } from '../src/log.js';
import { type Service, startService } from '../src/service.js';
import { migrationNames } from '../db/migrations.js';
import { freshDatabase, databaseUrl, indexOid } from './support/db.js';
import { testConfig } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

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

  it('finish a run killed after its index was built: the knex lock freed, the index kept', async () => {
    const db = await freshDatabase();
    try {
      // 0012 to apply again, the old index back (later migrations stay applied).
      await db.migrate.down({ name: '0012_batch_index_partial' });
      // What a start killed between 0012's build and its end leaves: the new index complete,
      // the old one still there, the migration not recorded, knex's lock row set.
      await db.raw(
        `CREATE UNIQUE INDEX jobs_batch_items_idx ON jobs (batch_id, batch_index)
         WHERE batch_id IS NOT NULL`,
      );
      await db('knex_migrations_lock').update({ is_locked: 1 });
      const built = await indexOid(db, 'jobs_batch_items_idx');
      expect(await migrateLatest(db)).to.deep.equal(['0012_batch_index_partial']);
      expect(
        await indexOid(db, 'jobs_batch_items_idx'),
        'the finished index is kept, not rebuilt',
      ).to.equal(built);
      expect(await indexOid(db, 'jobs_batch_idx')).to.equal(null);
      expect((await db('knex_migrations_lock').first('is_locked'))?.is_locked).to.equal(0);
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

describe('starting on a database a newer version has migrated', () => {
  const future = '0099_from_a_newer_version';
  let db: Knex | undefined;
  let service: Service | undefined;
  afterEach(async () => {
    await service?.stop();
    await db?.destroy();
    service = db = undefined;
  });

  /** Marks `name` applied, as the newer version's migrator would have. */
  const markApplied = (name: string) =>
    db!.raw(
      `INSERT INTO knex_migrations (name, batch, migration_time)
       SELECT ?, coalesce(max(batch), 0) + 1, now() FROM knex_migrations`,
      [name],
    );

  const start = (log: Logger) =>
    startService(testConfig(databaseUrl(db!)), {
      log,
      heuristic: new TestHeuristic(echoAfter(0)),
      listen: false,
    });

  it('starts when every migration it knows is applied, warns, and says so on /readyz', async () => {
    db = await freshDatabase();
    await markApplied(future);
    const lines: Array<{ msg: string; unknownMigrations?: string[] }> = [];
    const log = pino(
      { level: 'warn' },
      { write: (line: string) => void lines.push(JSON.parse(line)) },
    );
    service = await start(log);
    const warning = lines.find((l) => l.msg.startsWith('the database has migrations'));
    expect(warning?.unknownMigrations).to.deep.equal([future]);
    expect(await migrationState(db)).to.deep.equal({ missing: [], unknown: [future] });

    const ready = await supertest(service.app.callback()).get('/readyz').expect(200);
    expect(ready.body).to.deep.equal({
      status: 'ready',
      checks: { database: 'ok', migrations: 'newer' },
      unknown_migrations: [future],
    });
    const key = await issueKey(db, 'a');
    await supertest(service.app.callback())
      .post('/normalize_merchant')
      .set('Authorization', `Bearer ${key.key}`)
      .send(tx('Netflix'))
      .expect(202);
  });

  it('refuses to start when it also lacks a migration it knows: the database took another path', async () => {
    db = await freshDatabase();
    await markApplied(future);
    const last = migrationNames.at(-1)!;
    await db('knex_migrations').where({ name: last }).del();
    const failed = await start(createLogger('silent')).then(
      () => expect.fail('started'),
      (err: unknown) => err as Error,
    );
    expect(failed).to.be.instanceOf(DivergedMigrationsError);
    expect(failed.message).to.contain(future).and.to.contain(last);
    // Nothing was applied or undone.
    expect(await migrationState(db)).to.deep.equal({ missing: [last], unknown: [future] });
  });
});
