/**
 * Statements about clients and their API keys. The key format and verification are in
 * auth/keys.ts; only a key's SHA-256 is ever stored.
 */
import type { Knex } from 'knex';
import { KEYS_REVOKED_CHANNEL } from '../channels.js';
import { rows } from './rows.js';

export interface Client {
  id: string;
  name: string;
}

export interface KeyRecord {
  id: string;
  client_id: string;
  client_name: string;
  key_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// Inserts the client `name` unless it exists; returns it either way.
export async function ensureClient(db: Knex, name: string): Promise<Client> {
  if (!CLIENT_NAME.test(name)) {
    throw new Error(
      `client name must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (got "${name}")`,
    );
  }
  const upsert = () =>
    rows<Client>(
      db,
      `WITH ins AS (
         INSERT INTO clients (name) VALUES (?) ON CONFLICT (name) DO NOTHING RETURNING id, name
       )
       SELECT id, name FROM ins UNION ALL SELECT id, name FROM clients WHERE name = ?`,
      [name, name],
    );
  let [client] = await upsert();
  // Nothing back: another transaction inserted the name after this statement's snapshot was
  // taken (the insert waited for it to commit, then did nothing, and the read cannot see its
  // row). The next statement's snapshot does.
  if (!client) [client] = await upsert();
  if (!client) throw new Error(`client "${name}" could not be created`);
  return client;
}

// Inserts an API key (its id and hash) for client `clientId`.
export async function insertKey(
  db: Knex,
  key: { id: string; clientId: string; hash: Buffer },
): Promise<void> {
  await db.raw(`INSERT INTO api_keys (id, client_id, key_hash) VALUES (?, ?, ?)`, [
    key.id,
    key.clientId,
    key.hash,
  ]);
}

// Reads one key with its client; changes nothing.
export async function findKey(db: Knex, keyId: string): Promise<KeyRecord | undefined> {
  const res = await db.raw<{ rows: KeyRecord[] }>(
    `SELECT k.id, k.client_id, c.name AS client_name, k.key_hash, k.created_at, k.revoked_at
     FROM api_keys k JOIN clients c ON c.id = k.client_id WHERE k.id = ?`,
    [keyId],
  );
  return res.rows[0];
}

// Reads every key (optionally one client's), newest first; changes nothing.
export async function listKeys(
  db: Knex,
  clientName?: string,
): Promise<Omit<KeyRecord, 'key_hash'>[]> {
  const res = await db.raw<{ rows: Omit<KeyRecord, 'key_hash'>[] }>(
    `SELECT k.id, k.client_id, c.name AS client_name, k.created_at, k.revoked_at
     FROM api_keys k JOIN clients c ON c.id = k.client_id
     WHERE ?::text IS NULL OR c.name = ?
     ORDER BY k.created_at DESC, k.id`,
    [clientName ?? null, clientName ?? null],
  );
  return res.rows;
}

// Sets revoked_at=now() on a key that is not revoked yet and NOTIFYs KEYS_REVOKED_CHANNEL, so
// every process drops it from its cache. Returns whether a key was revoked now.
export async function revokeKey(db: Knex, keyId: string): Promise<boolean> {
  const res = await db.raw<{ rows: unknown[] }>(
    `WITH revoked AS (
       UPDATE api_keys SET revoked_at = now() WHERE id = ? AND revoked_at IS NULL RETURNING id
     )
     SELECT pg_notify(?, id) FROM revoked`,
    [keyId, KEYS_REVOKED_CHANNEL],
  );
  return res.rows.length > 0;
}
