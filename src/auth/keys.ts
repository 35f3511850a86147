/**
 * API keys: their format, how one is made, and how a presented key is verified. The statements
 * about clients and keys are in db/sql/clients.ts.
 *
 * A key reads `mn_<id>_<secret>`: `id` is 12 hex characters, public (listed, used to revoke);
 * `secret` is 32 random bytes in base64url. Only SHA-256 of the whole key is stored: a key has
 * 256 bits of entropy, so a fast hash is enough (a slow password hash protects guessable
 * secrets, and would cost every request). The key is shown once, when it is created.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
import {
  type Client,
  type KeyRecord,
  ensureClient,
  findKey,
  insertKey,
} from '../db/sql/clients.js';

const KEY_FORMAT = /^mn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface IssuedKey {
  /** The whole key: shown once, never stored. */
  key: string;
  keyId: string;
  client: Client;
}

/** SHA-256 of a whole key, as stored. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The key id of a well-formed key; `undefined` for anything else. */
export function keyIdOf(key: string): string | undefined {
  return KEY_FORMAT.exec(key)?.[1];
}

// Creates the client `clientName` if needed and inserts a new key for it; returns the key.
export async function issueKey(db: Knex, clientName: string): Promise<IssuedKey> {
  const client = await ensureClient(db, clientName);
  const keyId = randomBytes(6).toString('hex');
  const key = `mn_${keyId}_${randomBytes(32).toString('base64url')}`;
  await insertKey(db, { id: keyId, clientId: client.id, hash: hashKey(key) });
  return { key, keyId, client };
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
