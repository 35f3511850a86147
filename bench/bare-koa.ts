/**
 * The baseline next to `POST /normalize_merchant` in the benchmark: a bare Koa handler that
 * parses the JSON body and does one INSERT, nothing else (no validation, auth, quota or
 * idempotency). What the service adds over the minimum is the difference. `GET /jobs/<id>`
 * reads the row back (one SELECT): POST then GET, one after the other, is the floor under the
 * time-to-result measure on the same machine.
 *
 *   DATABASE_URL=… PORT=… node --import tsx bench/bare-koa.ts
 */
import http from 'node:http';
import Koa from 'koa';
import { koaBody } from 'koa-body';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
await pool.query(
  'CREATE TABLE IF NOT EXISTS bench_bare (id uuid PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())',
);
const app = new Koa();
app.use(koaBody());
app.use(async (ctx) => {
  // GET /jobs/<id>: the row back, one SELECT (the time-to-result floor's second request).
  const id = /^\/jobs\/([0-9a-f-]{36})$/.exec(ctx.path)?.[1];
  if (ctx.method === 'GET' && id) {
    const { rows } = await pool.query<{ id: string; body: unknown }>(
      'SELECT id, body FROM bench_bare WHERE id = $1',
      [id],
    );
    ctx.status = rows[0] ? 200 : 404;
    ctx.body = rows[0] ?? { error: 'not found' };
    return;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 204; // the readiness probe
    return;
  }
  const { rows } = await pool.query<{ id: string }>(
    'INSERT INTO bench_bare (id, body) VALUES (gen_random_uuid(), $1) RETURNING id',
    [JSON.stringify(ctx.request.body)],
  );
  ctx.status = 202;
  ctx.set('Location', `/jobs/${rows[0]?.id}`);
  ctx.body = { id: rows[0]?.id };
});
const handle = app.callback();
http
  .createServer((req, res) => void handle(req, res))
  .listen(Number(process.env.PORT), '127.0.0.1', () => {
    process.stdout.write('listening\n');
  });
process.on('SIGTERM', () => void pool.end().then(() => process.exit(0)));
