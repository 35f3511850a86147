import type { Knex } from 'knex';
import * as createJobs from './migrations/0001_create_jobs.js';
import * as batchesIdempotency from './migrations/0002_batches_idempotency.js';
import * as clients from './migrations/0003_clients.js';
import * as resultCache from './migrations/0004_result_cache.js';
import * as leanIndexes from './migrations/0005_lean_indexes.js';
import * as eventLog from './migrations/0006_event_log.js';
import * as webhooks from './migrations/0008_webhooks.js';
import * as batchesByClient from './migrations/0009_batches_by_client.js';
import * as eventsAfterCommit from './migrations/0010_events_announced_after_commit.js';
import * as claimIndexAlone from './migrations/0011_claim_index_alone.js';
import * as batchIndexPartial from './migrations/0012_batch_index_partial.js';
import * as waitingCacheKeyIndex from './migrations/0013_waiting_cache_key_index.js';
import * as payloadStatistics from './migrations/0014_payload_statistics.js';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
  /** `{ transaction: false }` for statements a transaction cannot run (CREATE INDEX CONCURRENTLY). */
  config?: { transaction?: boolean };
}

/**
 * Numbered, forward-only migrations, listed here rather than discovered on disk so the same list
 * works from TypeScript sources (tsx) and from the compiled `dist/` in the Docker image.
 * Append new migrations; never edit or reorder shipped ones.
 */
const MIGRATIONS: ReadonlyArray<readonly [name: string, migration: Migration]> = [
  ['0001_create_jobs', createJobs],
  ['0002_batches_idempotency', batchesIdempotency],
  ['0003_clients', clients],
  ['0004_result_cache', resultCache],
  ['0005_lean_indexes', leanIndexes],
  ['0006_event_log', eventLog],
  // 0007 was reserved for a change that turned out to need no migration.
  ['0008_webhooks', webhooks],
  ['0009_batches_by_client', batchesByClient],
  ['0010_events_announced_after_commit', eventsAfterCommit],
  ['0011_claim_index_alone', claimIndexAlone],
  ['0012_batch_index_partial', batchIndexPartial],
  ['0013_waiting_cache_key_index', waitingCacheKeyIndex],
  ['0014_payload_statistics', payloadStatistics],
];

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: () => Promise.resolve(MIGRATIONS.map(([name]) => name)),
  getMigrationName: (name) => name,
  getMigration: (name) => {
    const found = MIGRATIONS.find(([n]) => n === name);
    if (!found) throw new Error(`unknown migration ${name}`);
    return Promise.resolve(found[1]);
  },
};

/** The names of every migration this build knows, in order. */
export const migrationNames: readonly string[] = MIGRATIONS.map(([name]) => name);
