/**
 * `merchant-normalizer keys create|list|revoke`: API key administration. These talk to the
 * database, not to the HTTP API (there is no admin endpoint to protect): DATABASE_URL, or the
 * embedded Postgres under DATA_DIR, which is used in place while the service runs and started
 * for the command otherwise.
 */
import type { Knex } from 'knex';
import { issueKey } from '../auth/keys.js';
import { listKeys, revokeKey } from '../db/sql/clients.js';
import { runningEmbeddedUrl, startEmbeddedPostgres } from '../db/embedded.js';
import { createKnex, migrateLatest } from '../db/knex.js';
import { createLogger } from '../log.js';

export interface DatabaseTarget {
  databaseUrl?: string;
  dataDir: string;
}

/** Runs `work` on the target database (migrated), then closes everything it opened. */
export async function withDatabase<T>(
  target: DatabaseTarget,
  work: (db: Knex) => Promise<T>,
): Promise<T> {
  // Quiet: stdout carries the command's output (a new key), and failures are thrown.
  const log = createLogger('silent');
  let url = target.databaseUrl ?? (await runningEmbeddedUrl(target.dataDir));
  const embedded = url
    ? undefined
    : await startEmbeddedPostgres({ dataDir: target.dataDir, port: 0, log });
  url ??= embedded?.url ?? '';
  const db = createKnex(url, 2, log);
  try {
    await migrateLatest(db);
    return await work(db);
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

export async function createKeyCommand(
  target: DatabaseTarget,
  clientName: string,
  out: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
): Promise<void> {
  const issued = await withDatabase(target, (db) => issueKey(db, clientName));
  // The key alone on stdout, so `KEY=$(merchant-normalizer keys create --client x)` works.
  out.stdout.write(`${issued.key}\n`);
  out.stderr.write(
    `Created key ${issued.keyId} for client "${issued.client.name}". It is shown only now: ` +
      `store it safely. Send it as "Authorization: Bearer <key>", or set MERCHANT_API_KEY ` +
      `for the CLI.\n`,
  );
}

export async function listKeysCommand(
  target: DatabaseTarget,
  clientName: string | undefined,
  out: { stdout: NodeJS.WritableStream },
): Promise<void> {
  const keys = await withDatabase(target, (db) => listKeys(db, clientName));
  const rows = keys.map((k) => [
    k.id,
    k.client_name,
    k.created_at.toISOString(),
    k.revoked_at ? `revoked ${k.revoked_at.toISOString()}` : 'active',
  ]);
  const header = ['KEY ID', 'CLIENT', 'CREATED', 'STATUS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  for (const row of [header, ...rows]) {
    out.stdout.write(
      `${row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd()}\n`,
    );
  }
}

/** Returns whether the key was revoked now (false: unknown or already revoked). */
export async function revokeKeyCommand(
  target: DatabaseTarget,
  keyId: string,
  out: { stderr: NodeJS.WritableStream },
): Promise<boolean> {
  const revoked = await withDatabase(target, (db) => revokeKey(db, keyId));
  out.stderr.write(
    revoked
      ? `Revoked key ${keyId}: requests with it now get 401.\n`
      : `No active key with id "${keyId}" (see "keys list").\n`,
  );
  return revoked;
}
