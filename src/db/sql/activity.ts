/**
 * The SQL behind `GET /stats`: what one client's jobs did over a recent window, per time bucket
 * (finished jobs by outcome, and the time from submit to result), plus how many wait and run
 * now. One statement; changes nothing.
 *
 * Cost: finished jobs are found through `jobs_finished_idx` (finished_at, on finished rows) over
 * the window, so the statement reads every client's finishes in the window and keeps this
 * client's; pending and running counts use their partial indexes.
 */
import type { Knex } from 'knex';

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface ActivityBucket {
  start: Date;
  succeeded: number;
  failed: number;
  canceled: number;
  /** Submit to result of the jobs that succeeded or failed in the bucket, in milliseconds. */
  latencyMs: Percentiles;
}

export interface Activity {
  /** The start of the first bucket. */
  from: Date;
  /** When it was read (the database's now()). */
  to: Date;
  pending: number;
  running: number;
  buckets: ActivityBucket[];
  /** Over the whole window. */
  succeeded: number;
  failed: number;
  canceled: number;
  latencyMs: Percentiles;
}

type Row = {
  start: Date | null;
  succeeded: number;
  failed: number;
  canceled: number;
  latency: (number | null)[] | null;
  pending: number;
  running: number;
  now: Date;
};

const percentiles = (values: (number | null)[] | null): Percentiles => {
  const round = (v: number | null | undefined) => (v == null ? null : Math.round(v));
  return { p50: round(values?.[0]), p95: round(values?.[1]), p99: round(values?.[2]) };
};

// Reads `owner`'s pending and running counts now, and its jobs finished in the last
// `buckets` × `bucketSeconds` (the last bucket is the current, partial one) per bucket and in
// total: counts by outcome and latency percentiles (submit to result, canceled jobs left out).
// Changes nothing.
export async function clientActivity(
  db: Knex,
  opts: { owner: string; bucketSeconds: number; buckets: number },
): Promise<Activity> {
  const res = await db.raw<{ rows: Row[] }>(
    `WITH span AS (
       SELECT now() AS now,
              date_bin(make_interval(secs => ?), now(), timestamptz 'epoch')
                - make_interval(secs => ? * (? - 1)) AS first
     ), finished AS (
       SELECT date_bin(make_interval(secs => ?), j.finished_at, timestamptz 'epoch') AS start,
              j.status,
              CASE WHEN j.status <> 'canceled'
                   THEN extract(epoch FROM j.finished_at - j.created_at) * 1000 END AS latency
       FROM jobs j, span
       WHERE j.status IN ('succeeded', 'failed', 'canceled')
         AND j.finished_at >= span.first AND j.client_id = ?
     ), series AS (
       SELECT generate_series(span.first, span.now, make_interval(secs => ?)) AS start FROM span
     ), grouped AS (
       SELECT s.start,
              count(f.status) FILTER (WHERE f.status = 'succeeded')::int AS succeeded,
              count(f.status) FILTER (WHERE f.status = 'failed')::int AS failed,
              count(f.status) FILTER (WHERE f.status = 'canceled')::int AS canceled,
              percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY f.latency)
                FILTER (WHERE f.latency IS NOT NULL) AS latency
       FROM series s LEFT JOIN finished f ON f.start = s.start
       GROUP BY GROUPING SETS ((s.start), ())
     )
     SELECT g.*,
            (SELECT count(*) FROM jobs WHERE status = 'pending' AND client_id = ?)::int AS pending,
            (SELECT count(*) FROM jobs WHERE status = 'running' AND client_id = ?)::int AS running,
            (SELECT now FROM span) AS now
     FROM grouped g
     ORDER BY g.start NULLS FIRST`,
    [
      opts.bucketSeconds,
      opts.bucketSeconds,
      opts.buckets,
      opts.bucketSeconds,
      opts.owner,
      opts.bucketSeconds,
      opts.owner,
      opts.owner,
    ],
  );
  const [total, ...rows] = res.rows;
  if (!total || total.start !== null) throw new Error('activity: no total row');
  const buckets = rows.map((r) => ({
    start: r.start as Date,
    succeeded: r.succeeded,
    failed: r.failed,
    canceled: r.canceled,
    latencyMs: percentiles(r.latency),
  }));
  return {
    from: buckets[0]?.start ?? total.now,
    to: total.now,
    pending: total.pending,
    running: total.running,
    buckets,
    succeeded: total.succeeded,
    failed: total.failed,
    canceled: total.canceled,
    latencyMs: percentiles(total.latency),
  };
}
