/**
 * Mocha global fixture: the Postgres every test talks to. With DATABASE_URL set, that server;
 * otherwise an embedded Postgres in a fresh temporary directory, started through the same code
 * path as `npm start` and removed afterwards. Tests read the URL from TEST_DATABASE_URL.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/db/embedded.js';
import { createLogger } from '../../src/log.js';

let embedded: EmbeddedPostgres | undefined;
let dataDir: string | undefined;

export async function mochaGlobalSetup() {
  const external = process.env.DATABASE_URL?.trim();
  if (external) {
    process.env.TEST_DATABASE_URL = external;
    console.log(`tests use DATABASE_URL (${redact(external)})`);
    return;
  }
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-test-'));
  embedded = await startEmbeddedPostgres({ dataDir, port: 0, log: createLogger('warn') });
  process.env.TEST_DATABASE_URL = embedded.url;
  console.log(`tests use an embedded Postgres (${embedded.url})`);
}

export async function mochaGlobalTeardown() {
  await embedded?.stop();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
}

function redact(url: string) {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
