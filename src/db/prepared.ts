/**
 * Named prepared statements for the hottest queries (submit, claim, complete). knex's `raw`
 * sends every statement unnamed, so Postgres parses and plans it on each call; a named one is
 * parsed once per connection and its plan reused. Runs on a connection from knex's own pool.
 */
import type { Knex } from 'knex';

interface PgConnection {
  query<R>(config: { name: string; text: string; values: readonly unknown[] }): Promise<{
    rows: R[];
  }>;
}

const positional = new Map<string, string>();

/** knex-style `?` placeholders to `$1…$n` (the statements here have no other `?`). */
function toPositional(name: string, sql: string): string {
  let text = positional.get(name);
  if (text === undefined) {
    let n = 0;
    text = sql.replace(/\?/g, () => `$${++n}`);
    positional.set(name, text);
  }
  return text;
}

export async function prepared<R>(
  db: Knex,
  name: string,
  sql: string,
  bindings: readonly unknown[],
): Promise<{ rows: R[] }> {
  const client = db.client as {
    acquireConnection(): Promise<PgConnection>;
    releaseConnection(conn: PgConnection): Promise<void>;
  };
  const conn = await client.acquireConnection();
  try {
    return await conn.query<R>({ name, text: toPositional(name, sql), values: bindings });
  } finally {
    await client.releaseConnection(conn);
  }
}
