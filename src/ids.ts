/**
 * Ids of jobs and batches: UUIDv7 (RFC 9562), whose first 48 bits are the creation time in Unix
 * milliseconds. They sort by creation time, and an id alone tells when its job or batch was
 * made: after the retention period, a missing id can be answered `410 Gone` instead of `404`
 * without keeping tombstones (see http/gone.ts). Laid out by the `uuid` package.
 *
 * The random bits come from a pool filled 256 ids at a time, as node's own `randomUUID` does:
 * `uuid`'s default asks `crypto.getRandomValues` for 16 bytes per id, about 7 µs each, which
 * was 4 % of the service's CPU under a single-submit load (docs/performance.md). Passing our
 * own bytes turns off `uuid`'s ordering state, so the same state is kept here: the millisecond
 * and a 32-bit counter seeded with 31 random bits, so that ids made within one millisecond still
 * sort in the order they were made (RFC 9562, method 1: a fixed-length dedicated counter).
 */
import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

const ID_BYTES = 16;
const POOL_IDS = 256;
const pool = new Uint8Array(ID_BYTES * POOL_IDS);
let poolOffset = pool.length;
let lastMs = -Infinity;
let seq = 0;

function randomBytes16(): Uint8Array {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + ID_BYTES);
  poolOffset += ID_BYTES;
  return bytes;
}

/** A new UUIDv7, lower case; each sorts after the one made before it in this process. */
export function newId(): string {
  const random = randomBytes16();
  const now = Date.now();
  if (now > lastMs) {
    // A new millisecond: the counter starts at a random 31-bit value (as `uuid` seeds it).
    seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
    lastMs = now;
  } else {
    // The same millisecond (or the clock went back): count on; on overflow, borrow the next ms.
    seq = (seq + 1) | 0;
    if (seq === 0) lastMs++;
  }
  return v7({ random, msecs: lastMs, seq });
}

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** The creation time a UUIDv7 carries; `undefined` for any other id (v4 ids made before v7). */
export function createdAtOf(id: string): Date | undefined {
  if (!V7.test(id)) return undefined;
  const ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
  return new Date(ms);
}
