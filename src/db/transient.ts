/**
 * Retrying database calls, only for errors where trying again can succeed.
 */

// Postgres SQLSTATEs worth retrying (https://www.postgresql.org/docs/current/errcodes-appendix.html):
const RETRYABLE_SQLSTATES = new Set([
  '08000', // connection_exception
  '08003', // connection_does_not_exist
  '08006', // connection_failure
  '08001', // sqlclient_unable_to_establish_sqlconnection
  '08004', // sqlserver_rejected_establishment_of_sqlconnection
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '57014', // query_canceled: statement_timeout (DATABASE_STATEMENT_TIMEOUT_MS) under load
  '53300', // too_many_connections
  '57P01', // admin_shutdown (server restarting)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (server starting up)
]);

// Node socket errors seen when the server goes away or is not up yet.
const RETRYABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export function isTransientDbError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    return RETRYABLE_SQLSTATES.has(code) || RETRYABLE_NODE_CODES.has(code);
  }
  // knex pool exhaustion, pg "Connection terminated unexpectedly" (or "... due to connection
  // timeout", or the bare "timeout expired" of the same connect timeout) and pg's query_timeout
  // ("Query read timeout") carry no code.
  const message = (err as { message?: unknown }).message;
  return (
    typeof message === 'string' &&
    /Connection terminated|Knex: Timeout acquiring a connection|Query read timeout|^timeout expired$/.test(
      message,
    )
  );
}

/**
 * The client stopped waiting for the answer to a statement it had sent (pg's query_timeout):
 * a write may have been committed all the same. Every other transient error leaves nothing
 * behind: no connection (the statement was never sent), a statement Postgres canceled, or a
 * connection lost mid-statement (its transaction is rolled back; only a commit whose reply was
 * lost in that very instant escapes this, as with any database).
 */
export function outcomeUnknown(err: unknown): boolean {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.includes('Query read timeout');
}

/** Runs `fn`, retrying transient database errors with backoff (about 6 s in all by default). */
export async function withDbRetry<T>(fn: () => Promise<T>, attempts = 6): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts || !isTransientDbError(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** (i - 1)));
    }
  }
}
