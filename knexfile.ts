import { loadConfig } from './src/config.js';
import { knexConfig } from './src/db/knex.js';

/**
 * For the knex CLI only; the service builds its own connection from the validated config.
 * It needs DATABASE_URL (the embedded Postgres logs its URL at start-up), e.g.
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
 *     npx tsx node_modules/knex/bin/cli.js --knexfile knexfile.ts migrate:status
 */
const { databaseUrl, databasePoolMax } = loadConfig(process.env);
if (databaseUrl === undefined) {
  throw new Error('knexfile.ts: set DATABASE_URL (the embedded Postgres logs its URL at start-up)');
}
export default knexConfig(databaseUrl, databasePoolMax);
