/**
 * Clients and their API keys: every SQL statement about them, and the key format.
 *
 * A key reads `mn_<id>_<secret>`: `id` is 12 hex characters, public (listed, used to revoke);
 * `secret` is 32 random bytes in base64url. Only SHA-256 of the whole key is stored: a key has
 * 256 bits of entropy, so a fast hash is enough (a slow password hash protects guessable
 * secrets, and would cost every request). The key is shown once, when it is created.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';

/** NOTIFY channel on which a revocation is announced (payload: the key id). */
export const KEYS_REVOKED_CHANNEL = 'merchant_keys_revoked';

const KEY_FORMAT = /^mn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface Client {
  id: string;
  name: string;
}

export interface IssuedKey {
  /** The whole key: shown once, never stored. */
  key: string;
  keyId: string;
  client: Client;
}

export interface KeyRecord {
  id: string;
  client_id: string;
  client_name: string;
  key_hash: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

/** SHA-256 of a whole key, as stored. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The key id of a well-formed key; `undefined` for anything else. */
export function keyIdOf(key: string): string | undefined {
  return KEY_FORMAT.exec(key)?.[1];
}

// Inserts the client `name` unless it exists; returns it either way.
export async function ensureClient(db: Knex, name: string): Promise<Client> {
  if (!CLIENT_NAME.test(name)) {
    throw new Error(
      `client name must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (got "${name}")`,
    );
  }
  const res = await db.raw<{ rows: Client[] }>(
    `WITH ins AS (
       INSERT INTO clients (name) VALUES (?) ON CONFLICT (name) DO NOTHING RETURNING id, name
     )
     SELECT id, name FROM ins UNION ALL SELECT id, name FROM clients WHERE name = ?`,
    [name, name],
  );
  const client = res.rows[0];
  if (!client) throw new Error(`client "${name}" could not be created`);
  return client;
}

// Creates the client `clientName` if needed and inserts a new key for it; returns the key.
export async function issueKey(db: Knex, clientName: string): Promise<IssuedKey> {
  const client = await ensureClient(db, clientName);
  const keyId = randomBytes(6).toString('hex');
  const key = `mn_${keyId}_${randomBytes(32).toString('base64url')}`;
  await db.raw(`INSERT INTO api_keys (id, client_id, key_hash) VALUES (?, ?, ?)`, [
    keyId,
    client.id,
    hashKey(key),
  ]);
  return { key, keyId, client };
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

const DUMMY_HASH = hashKey('mn_000000000000_dummy');

// Reads the record of `key` if it is a stored, unrevoked key: its hash is compared in constant
// time (against a dummy when the id is unknown, so a miss costs the same); changes nothing.
export async function activeKey(db: Knex, key: string): Promise<KeyRecord | undefined> {
  const keyId = keyIdOf(key);
  const record = keyId ? await findKey(db, keyId) : undefined;
  const matches = timingSafeEqual(hashKey(key), record?.key_hash ?? DUMMY_HASH);
  return record && matches && record.revoked_at === null ? record : undefined;
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
