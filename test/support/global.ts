/**
 * Mocha global fixture: the Postgres server every test talks to. With DATABASE_URL set, that
 * server; otherwise an embedded Postgres in a fresh temporary directory, started through the
 * same code path as `npm start` and removed afterwards.
 *
 * No test uses the database named in the URL: each test gets a database of its own, cloned from
 * a template migrated once here (see `freshDatabase` in db.ts). The template and every test
 * database are dropped at the end; ones left by a run that was killed are dropped by the next.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/db/embedded.js';
import { createKnex, migrateLatest } from '../../src/db/knex.js';
import { createLogger } from '../../src/log.js';
import { adminQuery, dropDatabase, dropLeftovers, templateName, withDatabase } from './db.js';

let embedded: EmbeddedPostgres | undefined;
let dataDir: string | undefined;

export async function mochaGlobalSetup() {
  const external = process.env.DATABASE_URL?.trim();
  if (external) {
    process.env.TEST_DATABASE_URL = external;
    console.log(`tests use the server of DATABASE_URL (${redact(external)})`);
  } else {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-test-'));
    embedded = await startEmbeddedPostgres({ dataDir, port: 0, log: createLogger('warn') });
    process.env.TEST_DATABASE_URL = embedded.url;
    console.log(`tests use an embedded Postgres (${embedded.url})`);
  }
  await dropLeftovers();
  const template = templateName();
  process.env.TEST_TEMPLATE_DATABASE = template;
  await adminQuery(`CREATE DATABASE "${template}"`);
  const db = createKnex(withDatabase(template), 2, createLogger('warn'));
  try {
    await migrateLatest(db);
  } finally {
    await db.destroy();
  }
}

export async function mochaGlobalTeardown() {
  if (process.env.TEST_DATABASE_URL) {
    await dropDatabase(templateName()).catch((err: unknown) => console.error(err));
    // Those of this process, then those of `--parallel` workers that have exited.
    await dropLeftovers().catch((err: unknown) => console.error(err));
    await dropLeftovers(process.pid).catch((err: unknown) => console.error(err));
  }
  await embedded?.stop();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
}

function redact(url: string) {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
