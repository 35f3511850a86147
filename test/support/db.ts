import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { ensureClient } from '../../src/auth/keys.js';
import { createKnex, migrateLatest } from '../../src/db/knex.js';
import * as store from '../../src/jobs/store.js';
import { createLogger } from '../../src/log.js';
import { tx } from './heuristics.js';

export function testDatabaseUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests through mocha (npm test)');
  return url;
}

/** A pool on the test database with migrations applied and no jobs left from earlier tests. */
export async function freshDatabase(poolMax = 10): Promise<Knex> {
  const db = createKnex(testDatabaseUrl(), poolMax, createLogger('warn'));
  await migrateLatest(db);
  await db.raw('TRUNCATE jobs, batches, api_keys, clients, results, flights');
  return db;
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
 * A pending job inserted straight into the table, as another process would (no local wake-up);
 * it belongs to client "a" unless another client is named.
 */
export async function insertPending(
  db: Knex,
  description: string,
  maxAttempts = 3,
  client = 'a',
): Promise<store.JobRow> {
  const owner = await clientId(db, client);
  return store
    .insertJob(db, { id: randomUUID(), clientId: owner, transaction: tx(description), maxAttempts })
    .then((r) => r.row);
}
