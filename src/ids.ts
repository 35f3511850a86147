/**
 * Ids of jobs and batches: UUIDv7 (RFC 9562), whose first 48 bits are the creation time in Unix
 * milliseconds. They sort by creation time, and an id alone tells when its job or batch was
 * made: after the retention period, a missing id can be answered `410 Gone` instead of `404`
 * without keeping tombstones (see http/gone.ts).
 *
 * Made here rather than by the `uuid` package, which asks the CSPRNG for 16 bytes per id (a
 * measurable share of a single submit, and 1,000 calls per batch): random bytes are drawn from
 * a pool refilled 4 KiB at a time. Ids made within one millisecond stay in order (RFC 9562
 * §6.2, method 1): the 12 bits of `rand_a` and the first 30 of `rand_b` are a counter, seeded
 * at random each millisecond and incremented within it; the last 32 bits are random.
 */
import { randomFillSync } from 'node:crypto';

const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;

/** `n` (≤ 16) fresh random bytes' offset in POOL. */
function randomAt(n: number): number {
  if (poolAt + n > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += n;
  return at;
}

const COUNTER_BITS = 42;
const COUNTER_MAX = 2 ** COUNTER_BITS - 1;
const LOW_BITS = 2 ** 30;
/** Byte → two lower-case hex digits. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Makes UUIDv7s in order, from a clock (`Date.now`); each generator keeps its own order. */
export function idGenerator(clock: () => number = () => Date.now()): () => string {
  let lastMs = -1;
  let counter = 0;
  return () => {
    const now = clock();
    if (now > lastMs) {
      lastMs = now;
      counter = seed();
    } else if (counter < COUNTER_MAX) {
      counter += 1; // the same millisecond, or the clock went back: keep counting from the last
    } else {
      lastMs += 1; // a millisecond's counter ran out: borrow the next millisecond
      counter = seed();
    }
    return format(lastMs, counter);
  };
}

/** A counter seed: 41 random bits, so that a millisecond has at least 2^41 ids to go. */
function seed(): number {
  return POOL.readUIntBE(randomAt(6), 6) % 2 ** (COUNTER_BITS - 1);
}

const hex = (b: number) => HEX[b & 0xff] as string;

/** The id of millisecond `ms` and `counter`, with 32 random bits. */
function format(ms: number, counter: number): string {
  const randA = Math.floor(counter / LOW_BITS); // 12 bits
  const low = counter % LOW_BITS; // 30 bits
  const tail = randomAt(4);
  return (
    hex(ms / 2 ** 40) +
    hex(ms / 2 ** 32) +
    hex(ms / 2 ** 24) +
    hex(ms / 2 ** 16) +
    '-' +
    hex(ms / 2 ** 8) +
    hex(ms) +
    '-' +
    hex(0x70 | (randA >> 8)) +
    hex(randA) +
    '-' +
    hex(0x80 | (low >> 24)) +
    hex(low >> 16) +
    '-' +
    hex(low >> 8) +
    hex(low) +
    hex(POOL[tail] ?? 0) +
    hex(POOL[tail + 1] ?? 0) +
    hex(POOL[tail + 2] ?? 0) +
    hex(POOL[tail + 3] ?? 0)
  );
}

/** A new UUIDv7, lower case; each one sorts after the previous one made in this process. */
export const newId: () => string = idGenerator();

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** The creation time a UUIDv7 carries; `undefined` for any other id (v4 ids made before v7). */
export function createdAtOf(id: string): Date | undefined {
  if (!V7.test(id)) return undefined;
  const ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
  return new Date(ms);
}
