/**
 * Bearer-key authentication: `Authorization: Bearer mn_<id>_<secret>`.
 *
 * The key's id finds its row; the SHA-256 of the presented key is compared with the stored one
 * in constant time (and against a dummy when there is no row, so a miss costs the same). A
 * verified key is remembered for `cacheMs`, so a busy client costs no query per request; a
 * revocation reaches every process at once through NOTIFY (`forget`), and the cache TTL bounds
 * the delay if a notification is ever missed.
 *
 * Failed authentication costs no database work in steady state: a key found invalid is
 * remembered as such for REJECTED_TTL_MS (a key is a random secret: one that did not exist
 * never will), and each client address may fail `failuresPerMinute` lookups a minute (a token
 * bucket); past that, its requests with a key this process never verified get 429 without a
 * lookup. A key that does not even have the key format costs no lookup and is not counted.
 *
 * Requests that bring the same key while it is being looked up share that lookup (a busy
 * client's connections, each time its trust runs out), and only the request that started it
 * can be charged for a failure. A lookup that was under way when a revocation arrived
 * (`forget`) answers its own requests but is not remembered: it may have read the key before
 * the revocation committed.
 */
import type { Knex } from 'knex';
import type { Client } from '../db/sql/clients.js';
import { TooManyAuthFailuresError, UnauthorizedError } from '../errors.js';
import { sha256 } from '../sha256.js';
import { activeKey, keyIdOf } from './keys.js';

export interface Principal extends Client {
  keyId: string;
}

export interface AuthenticatorOptions {
  /** How long a verified key is trusted without a lookup. @defaultValue 30000 */
  cacheMs?: number;
  /** Failed lookups one client address may make per minute (AUTH_FAILURES_PER_MINUTE). @defaultValue 60 */
  failuresPerMinute?: number;
}

const MAX_CACHED = 10_000;
/** A key found invalid is answered 401 without a lookup for this long. */
const REJECTED_TTL_MS = 5 * 60 * 1000;
const MAX_TRACKED_ADDRESSES = 10_000;

/** Failed-lookup allowance of one client address: a token bucket refilled over a minute. */
interface Allowance {
  tokens: number;
  at: number;
}

export class Authenticator {
  /** Verified keys by SHA-256 (hex) of the whole key; trusted until `until`, known after. */
  private readonly verified = new Map<string, { principal: Principal; until: number }>();
  /** Keys found invalid (unknown, mistyped, revoked), by SHA-256 (hex), until when. */
  private readonly rejected = new Map<string, number>();
  private readonly allowances = new Map<string, Allowance>();
  /** Lookups under way, by SHA-256 (hex) of the key. */
  private readonly lookups = new Map<string, Promise<Principal | undefined>>();
  /** Counts `forget` calls: a lookup that began before one is not remembered. */
  private generation = 0;
  private readonly cacheMs: number;
  private readonly failuresPerMinute: number;

  constructor(
    private readonly db: Knex,
    opts: AuthenticatorOptions = {},
  ) {
    this.cacheMs = opts.cacheMs ?? 30_000;
    this.failuresPerMinute = opts.failuresPerMinute ?? 60;
  }

  /**
   * The client a request's Authorization header names; throws UnauthorizedError otherwise, or
   * TooManyAuthFailuresError when `address` has used up its failed lookups.
   */
  async authenticate(header: string, address = ''): Promise<Principal> {
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
    const cacheKey = sha256(key, 'hex');
    const now = Date.now();
    const known = this.verified.get(cacheKey);
    if (known && known.until > now) return known.principal;
    if ((this.rejected.get(cacheKey) ?? 0) > now) throw invalidKey();
    // Not even shaped like a key: no lookup needed, so none to limit.
    if (keyIdOf(key) === undefined) throw invalidKey();
    // Only keys never verified here are limited: a client whose key is due for another check
    // is not locked out by others failing from the same address (a NAT, a proxy).
    const allowance = known ? undefined : this.allowance(address, now);
    if (allowance && allowance.tokens < 1) {
      throw new TooManyAuthFailuresError(this.secondsUntilToken(allowance));
    }

    let lookup = this.lookups.get(cacheKey);
    const started = lookup === undefined;
    if (!lookup) {
      const own = this.lookUp(key, cacheKey);
      const done = () => {
        if (this.lookups.get(cacheKey) === own) this.lookups.delete(cacheKey);
      };
      own.then(done, done);
      this.lookups.set(cacheKey, own);
      lookup = own;
    }
    const principal = await lookup;
    if (!principal) {
      if (started && allowance) allowance.tokens -= 1;
      throw invalidKey();
    }
    return principal;
  }

  /** Reads `key`'s record and remembers the verdict (a valid key only if no `forget` came meanwhile). */
  private async lookUp(key: string, cacheKey: string): Promise<Principal | undefined> {
    const generation = this.generation;
    const record = await activeKey(this.db, key);
    const now = Date.now();
    if (!record) {
      this.verified.delete(cacheKey);
      if (this.rejected.size >= MAX_CACHED) this.rejected.clear();
      this.rejected.set(cacheKey, now + REJECTED_TTL_MS);
      return undefined;
    }
    const principal = { id: record.client_id, name: record.client_name, keyId: record.id };
    if (generation === this.generation) {
      if (this.verified.size >= MAX_CACHED) this.verified.clear();
      this.verified.set(cacheKey, { principal, until: now + this.cacheMs });
    }
    return principal;
  }

  /** Drops a revoked key from the cache (from the KEYS_REVOKED_CHANNEL notification). */
  forget(keyId: string): void {
    this.generation += 1;
    this.lookups.clear(); // later requests look the key up again rather than join a stale read
    for (const [hash, entry] of this.verified) {
      if (entry.principal.keyId === keyId) this.verified.delete(hash);
    }
  }

  /**
   * Checks every cached key again on its next use: after a lost LISTEN connection, revocations
   * may have been missed. They stay known, so the failed-lookup limit does not apply to them.
   */
  forgetAll(): void {
    this.generation += 1;
    this.lookups.clear();
    for (const entry of this.verified.values()) entry.until = 0;
  }

  /** `address`'s bucket, refilled for the time since it was last looked at. */
  private allowance(address: string, now: number): Allowance {
    let allowance = this.allowances.get(address);
    if (!allowance) {
      if (this.allowances.size >= MAX_TRACKED_ADDRESSES) this.forgetFullAllowances(now);
      allowance = { tokens: this.failuresPerMinute, at: now };
      this.allowances.set(address, allowance);
      return allowance;
    }
    const refill = ((now - allowance.at) / 60_000) * this.failuresPerMinute;
    allowance.tokens = Math.min(this.failuresPerMinute, allowance.tokens + refill);
    allowance.at = now;
    return allowance;
  }

  /** Addresses whose bucket has refilled are as good as new: forget them (oldest first if need be). */
  private forgetFullAllowances(now: number) {
    for (const [address, a] of this.allowances) {
      const tokens = a.tokens + ((now - a.at) / 60_000) * this.failuresPerMinute;
      if (tokens >= this.failuresPerMinute) this.allowances.delete(address);
    }
    for (const address of this.allowances.keys()) {
      if (this.allowances.size < MAX_TRACKED_ADDRESSES) break;
      this.allowances.delete(address);
    }
  }

  private secondsUntilToken(allowance: Allowance): number {
    return Math.max(1, Math.ceil(((1 - allowance.tokens) * 60) / this.failuresPerMinute));
  }
}

const invalidKey = () =>
  new UnauthorizedError(
    'The API key is not valid (unknown, mistyped or revoked).',
    'invalid_token',
  );
