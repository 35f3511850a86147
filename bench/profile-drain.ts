/**
 * Profiling aid: one drain of BENCH_DRAIN_JOBS no-op jobs against an already running server
 * (BENCH_BASE, BENCH_KEY), the same requests as `npm run bench`'s drain phase. Run the server
 * with `node --cpu-prof` and Postgres with pg_stat_statements to see where a job's time goes.
 */
import pg from 'pg';

const base = process.env.BENCH_BASE ?? 'http://127.0.0.1:8080';
const key = process.env.BENCH_KEY ?? '';
const n = Number(process.env.BENCH_DRAIN_JOBS ?? 20_000);
const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: 4 }, async () => {
    while (next * 1000 < n) {
      const b = next++;
      const size = Math.min(1000, n - b * 1000);
      const transactions = Array.from({ length: size }, (_, k) => ({
        date: '2026-04-03',
        description: `OPENAI ${b * 1000 + k}`,
        amount: k,
      }));
      const res = await fetch(`${base}/normalize_merchant/batch`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ transactions }),
      });
      if (res.status !== 202) throw new Error(`batch: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
  }),
);
const submitted = performance.now();
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
for (;;) {
  const { rows } = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')`,
  );
  if (Number(rows[0]?.n) >= n) break;
  await new Promise((resolve) => setTimeout(resolve, 20));
}
await pool.end();
const s = (performance.now() - t0) / 1000;
console.log(
  JSON.stringify({ jobs: n, submit_s: (submitted - t0) / 1000, total_s: s, jobs_per_s: n / s }),
);
