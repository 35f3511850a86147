/**
 * Loads the big table for bench/bigtable.ts in SQL: `finished` finished jobs (94 % succeeded,
 * 4 % failed, 2 % canceled) created over the 30 days before the last hour and finished 2-30 s
 * later, each with its `job_events` row, then `pending` jobs created over the last hour, spread
 * over the clients named `big-…` round-robin. INSERT … SELECT over generate_series, `chunk`
 * rows per statement, with all nine indexes of `jobs` in place (they grow as they would).
 *
 * Ids are UUIDv7 like src/ids.ts makes them: the creation time in milliseconds, then bits from
 * md5 of the row's number; `jobId` computes the same id here, so the bench can read random
 * existing jobs without asking the database for them first (which would warm their pages).
 */
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';

const HOUR = 3_600_000;
/** The finished jobs' spread: the retention window they sit in. */
export const SPAN_MS = 30 * 24 * HOUR;

export interface Layout {
  /** Epoch ms the load started at: pending jobs were created in the hour before it. */
  t0: number;
  finished: number;
  pending: number;
  clients: number;
}

/** Descriptor, merchant name and id, intermediary: what the result jsonb says for it. */
const MERCHANTS: Array<[string, string, string, string | null]> = [
  ['Payment Netflix APRIL***', 'Netflix', 'netflix', null],
  ['SQ *BLUE BOTTLE COFFEE DENVER CO', 'Blue Bottle Coffee', 'blue-bottle-coffee', 'Square'],
  ['UBER *TRIP HELP.UBER.COM', 'Uber', 'uber', null],
  ['AMZN Mktp US*2K4LM81Q2', 'Amazon', 'amazon', null],
  ['PAYPAL *SPOTIFYAB', 'Spotify', 'spotify', 'PayPal'],
  ['OPENAI *CHATGPT SUBSCR', 'OpenAI', 'openai', null],
  ['TST* SHAKE SHACK 1021', 'Shake Shack', 'shake-shack', 'Toast'],
  ['GOOGLE *YouTubePremium', 'YouTube', 'youtube', 'Google'],
  ['LYFT *RIDE SUN 10PM', 'Lyft', 'lyft', null],
  ['STARBUCKS STORE 08231', 'Starbucks', 'starbucks', null],
  ['APPLE.COM/BILL ITUNES.COM', 'Apple', 'apple', null],
  ['DD *DOORDASH CHIPOTLE', 'Chipotle', 'chipotle', 'DoorDash'],
];

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** Creation time (epoch ms) of finished (`f`) or pending (`p`) job number `n`. */
export function createdMs(l: Layout, kind: 'f' | 'p', n: number): number {
  return kind === 'f'
    ? l.t0 - HOUR - SPAN_MS + Number((BigInt(n) * BigInt(SPAN_MS)) / BigInt(l.finished))
    : l.t0 - HOUR + Number((BigInt(n) * BigInt(HOUR)) / BigInt(l.pending));
}

/** The id the load gave job number `n` (same formula as `ID_SQL`). */
export function jobId(l: Layout, kind: 'f' | 'p', n: number): string {
  const t = createdMs(l, kind, n).toString(16).padStart(12, '0');
  const h = md5(`${kind}${n}`);
  return `${t.slice(0, 8)}-${t.slice(8)}-7${h.slice(0, 3)}-8${h.slice(3, 6)}-${h.slice(6, 18)}`;
}

// Columns of one generated job g(n, ms, at, h): its id, client, transaction.
const ID_SQL = `(lpad(to_hex(g.ms), 12, '0') || '7' || substr(g.h, 1, 3) || '8'
                 || substr(g.h, 4, 15))::uuid`;
const CLIENT_SQL = `c.ids[1 + g.n % cardinality(c.ids)]`;
const TX_SQL = `jsonb_build_object(
  'date', to_char(g.at, 'YYYY-MM-DD'),
  'description', (m.list -> (g.n % jsonb_array_length(m.list))::int ->> 0) || ' ' || (g.n % 9973),
  'amount', ((g.n * 7919) % 20000) / 100.0)`;
const FROM_SQL = `(SELECT array_agg(id ORDER BY name) AS ids FROM clients WHERE name LIKE 'big-%') c,
  (SELECT ?::jsonb AS list) m`;

function finishedSql(): string {
  return `WITH inserted AS (
    INSERT INTO jobs (id, client_id, status, transaction, result, error, attempts, max_attempts,
                      run_after, created_at, started_at, finished_at)
    SELECT ${ID_SQL}, ${CLIENT_SQL}, g.status, ${TX_SQL},
      CASE WHEN g.status = 'succeeded' THEN jsonb_build_object(
        'merchant', jsonb_build_object('name', g.m ->> 1, 'id', g.m ->> 2),
        'intermediaries', CASE WHEN g.m ->> 3 IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(
          jsonb_build_object('name', g.m ->> 3, 'id', lower(g.m ->> 3))) END) END,
      CASE WHEN g.status = 'failed' THEN jsonb_build_object('code', 'heuristic_error',
        'message', 'the heuristic answered 502 Bad Gateway', 'attempt', 3) END,
      CASE g.status WHEN 'failed' THEN 3 WHEN 'canceled' THEN 0 ELSE 1 END, 3,
      g.at, g.at,
      CASE WHEN g.status <> 'canceled' THEN g.at + interval '40 ms' END,
      g.at + make_interval(secs => 2 + (g.n * 31) % 28)
    FROM ${FROM_SQL}, LATERAL (
      SELECT n, ms, to_timestamp(ms / 1000.0) AS at, md5('f' || n) AS h,
             m.list -> (n % jsonb_array_length(m.list))::int AS m,
             CASE WHEN n % 100 < 94 THEN 'succeeded' WHEN n % 100 < 98 THEN 'failed'
                  ELSE 'canceled' END AS status
      FROM generate_series(?::bigint, ?::bigint) n,
           LATERAL (SELECT ?::bigint + (n * ?::bigint) / ?::bigint AS ms) t
    ) g
    RETURNING id, client_id, status, finished_at
  )
  INSERT INTO job_events (type, client_id, job_id, created_at)
  SELECT 'job.' || status, client_id, id, finished_at FROM inserted
  WHERE ?::boolean`;
}

function pendingSql(): string {
  return `INSERT INTO jobs (id, client_id, transaction, max_attempts, run_after, created_at)
    SELECT ${ID_SQL}, ${CLIENT_SQL}, ${TX_SQL}, 3, g.at, g.at
    FROM ${FROM_SQL}, LATERAL (
      SELECT n, ms, to_timestamp(ms / 1000.0) AS at, md5('p' || n) AS h
      FROM generate_series(?::bigint, ?::bigint) n,
           LATERAL (SELECT ?::bigint + (n * ?::bigint) / ?::bigint AS ms) t
    ) g`;
}

/** Inserts the layout's jobs (and events, when `events`), `chunk` rows per statement. */
export async function loadJobs(
  db: Knex,
  l: Layout,
  opts: { chunk: number; events: boolean; progress: (line: string) => void },
): Promise<void> {
  const list = JSON.stringify(MERCHANTS);
  const t0 = performance.now();
  const elapsed = () => `${Math.round((performance.now() - t0) / 1000)} s`;
  for (let lo = 0; lo < l.finished; lo += opts.chunk) {
    const hi = Math.min(l.finished, lo + opts.chunk) - 1;
    const base = l.t0 - HOUR - SPAN_MS;
    await db.raw(finishedSql(), [list, lo, hi, base, SPAN_MS, l.finished, opts.events]);
    opts.progress(`loaded ${fmt(hi + 1)} of ${fmt(l.finished)} finished jobs (${elapsed()})`);
  }
  for (let lo = 0; lo < l.pending; lo += opts.chunk) {
    const hi = Math.min(l.pending, lo + opts.chunk) - 1;
    await db.raw(pendingSql(), [list, lo, hi, l.t0 - HOUR, HOUR, l.pending]);
    opts.progress(`loaded ${fmt(hi + 1)} of ${fmt(l.pending)} pending jobs (${elapsed()})`);
  }
}

export const fmt = (n: number) => n.toLocaleString('en-US');
