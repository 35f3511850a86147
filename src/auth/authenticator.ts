/**
 * Bearer-key authentication: `Authorization: Bearer mn_<id>_<secret>`.
 *
 * The key's id finds its row; the SHA-256 of the presented key is compared with the stored one
 * in constant time (and against a dummy when there is no row, so a miss costs the same). A
 * verified key is remembered for `cacheMs`, so a busy client costs no query per request; a
 * revocation reaches every process at once through NOTIFY (`forget`), and the cache TTL bounds
 * the delay if a notification is ever missed.
 */
import type { Knex } from 'knex';
import type { Client } from '../db/sql/clients.js';
import { UnauthorizedError } from '../errors.js';
import { activeKey, hashKey } from './keys.js';

export interface Principal extends Client {
  keyId: string;
}

const MAX_CACHED = 10_000;

export class Authenticator {
  /** Verified keys by SHA-256 (hex) of the whole key. */
  private readonly verified = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly db: Knex,
    private readonly cacheMs = 30_000,
  ) {}

  /** The client a request's Authorization header names; throws UnauthorizedError otherwise. */
  async authenticate(header: string): Promise<Principal> {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!match?.[1]) {
      throw new UnauthorizedError(
        header
          ? 'The Authorization header must read "Bearer <API key>".'
          : 'This call needs an API key: send "Authorization: Bearer <API key>".',
        header ? 'invalid_request' : undefined,
      );
    }
    const key = match[1];
    const hash = hashKey(key);
    const cacheKey = hash.toString('hex');
    const cached = this.verified.get(cacheKey);
    if (cached && cached.until > Date.now()) return cached.principal;

    const record = await activeKey(this.db, key);
    if (!record) {
      this.verified.delete(cacheKey);
      throw new UnauthorizedError(
        'The API key is not valid (unknown, mistyped or revoked).',
        'invalid_token',
      );
    }
    const principal = { id: record.client_id, name: record.client_name, keyId: record.id };
    if (this.verified.size >= MAX_CACHED) this.verified.clear();
    this.verified.set(cacheKey, { principal, until: Date.now() + this.cacheMs });
    return principal;
  }

  /** Drops a revoked key from the cache (from the KEYS_REVOKED_CHANNEL notification). */
  forget(keyId: string): void {
    for (const [hash, entry] of this.verified) {
      if (entry.principal.keyId === keyId) this.verified.delete(hash);
    }
  }

  /** Drops every cached key: after a lost LISTEN connection, revocations may have been missed. */
  forgetAll(): void {
    this.verified.clear();
  }
}
