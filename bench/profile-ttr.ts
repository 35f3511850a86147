/**
 * Profiling aid: sequential POST then GET ?wait against a running server (BENCH_BASE,
 * BENCH_KEY), splitting each job's time to result into its steps, from the client's clock and
 * the job's own timestamps (same machine, same clock).
 */
const base = process.env.BENCH_BASE ?? 'http://127.0.0.1:8080';
const headers = {
  'content-type': 'application/json',
  authorization: `Bearer ${process.env.BENCH_KEY}`,
};
const n = Number(process.env.BENCH_TTR_JOBS ?? 300);
const steps: Record<string, number[]> = {};
const add = (k: string, v: number) => (steps[k] ??= []).push(v);
for (let i = 0; i < n; i++) {
  const t0 = Date.now() + (performance.now() % 1);
  const a = performance.now();
  const res = await fetch(`${base}/normalize_merchant`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ date: '2026-04-03', description: `OPENAI ${i}`, amount: i }),
  });
  const { id } = (await res.json()) as { id: string };
  const b = performance.now();
  const got = await fetch(`${base}/jobs/${id}?wait=10`, { headers });
  const job = (await got.json()) as { created_at: string; started_at: string; finished_at: string };
  const c = performance.now();
  const created = Date.parse(job.created_at);
  const started = Date.parse(job.started_at);
  const finished = Date.parse(job.finished_at);
  add('total', c - a);
  add('post', b - a);
  add('get_wait', c - b);
  add('created_to_started', started - created);
  add('started_to_finished', finished - started);
  add('finished_to_answered', t0 + (c - a) - finished);
}
for (const [k, v] of Object.entries(steps)) {
  v.sort((x, y) => x - y);
  const q = (p: number) => v[Math.min(v.length - 1, Math.floor(v.length * p))]?.toFixed(2);
  console.log(`${k.padEnd(22)} p50 ${q(0.5)}  p90 ${q(0.9)}  p99 ${q(0.99)}`);
}
