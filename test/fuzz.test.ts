/**
 * Property: whatever a client sends (method, path, id, query string, headers, body), the
 * service never answers 5xx, every error is problem+json naming its own status, and a rejected
 * request creates no job.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { newId } from '../src/ids.js';
import fc from 'fast-check';
import { type IssuedKey, issueKey } from '../src/auth/keys.js';
import { revokeKey } from '../src/db/sql/clients.js';
import { clientId, rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);
/** What anyone may read without an API key. */
// The dashboard's page and files (`/`, `/dashboard/…`) hold no data: its script asks the API.
const OPEN_PATHS = /^\/(healthz|readyz|metrics|openapi\.json|docs(\/.*)?|dashboard\/[\w.-]+)?$/;

const uuid = fc.uuid();
const junk = fc.string({ maxLength: 40 });
const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});

/** A batch of client "a" made before the runs, so result pages get as far as the database. */
const KNOWN_BATCH = '5d0c9a4e-8f7b-4c1d-9e2a-3b4c5d6e7f80';
const id = fc.oneof(
  uuid,
  fc.constant(KNOWN_BATCH),
  junk.map(encodeURIComponent),
  fc.constantFrom('', '..', '%', '%zz', '0'),
);
const path = fc.oneof(
  fc.constant('/normalize_merchant'),
  fc.constant('/normalize_merchant/batch'),
  fc.constant('/jobs'),
  id.map((i) => `/jobs/${i}`),
  id.map((i) => `/batches/${i}`),
  id.map((i) => `/batches/${i}/results`),
  // Push delivery (not GET /events: a valid request there is a stream that does not end).
  fc.constant('/webhooks'),
  id.map((i) => `/webhooks/${i}`),
  id.map((i) => `/webhooks/${i}/rotate-secret`),
  id.map((i) => `/webhooks/${i}/deliveries`),
  fc.tuple(id, id).map(([i, d]) => `/webhooks/${i}/deliveries/${d}/redeliver`),
  fc.constantFrom('/healthz', '/readyz', '/openapi.json', '/docs', '/docs/assets/x', '/'),
  fc.constantFrom('/stats', '/batches', '/dashboard/app.js', '/dashboard/x'),
  fc.webPath(),
);

/** Cursors of ours and near-misses: numbers past what the column holds, the wrong kind. */
const cursor = fc
  .constantFrom(
    'seq:1',
    'seq:9223372036854775807',
    'seq:9223372036854775808',
    'seq:9999999999999999999',
    'index:0',
    'index:2147483647',
    'index:2147483648',
    'index:-1',
    'seq:1:2',
    'seq:\u0000',
  )
  .map((text) => Buffer.from(text).toString('base64url'));
const queryValue = fc.oneof(
  fc.integer({ min: -5, max: 2000 }).map(String),
  fc.constantFrom('pending', 'failed,canceled', 'done', '', '1.5', 'NaN', 'bm9wZQ', 'c2VxOjE'),
  cursor,
  fc.constantFrom('1h', '15m', '24h', '2h'),
  uuid,
  junk,
);
const query = fc
  .dictionary(
    fc.oneof(
      {
        arbitrary: fc.constantFrom('wait', 'status', 'batch', 'limit', 'cursor', 'window'),
        weight: 4,
      },
      { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
    ),
    queryValue,
    { maxKeys: 4 },
  )
  .map((q) => {
    // A valid `wait` over 1 s holds a long-poll on a pending job or batch (the runner is stopped)
    // for that long: 10 s or more met the client's 10 s timeout and failed the run. Out-of-range
    // and malformed values are kept: they are refused at once.
    const wait = Number(q.wait);
    if (Number.isInteger(wait) && wait > 1 && wait <= 60) q.wait = '1';
    const s = new URLSearchParams(q).toString();
    return s ? `?${s}` : '';
  });

/**
 * Text Postgres cannot store, though JSON carries it: NUL and unpaired surrogates (JSON.stringify
 * writes a lone surrogate as a `\ud800` escape), next to a well-formed pair.
 */
const hostileText = fc
  .tuple(
    fc.string({ maxLength: 20 }),
    fc.constantFrom('\u0000', '\ud800', '\udfff', '\udc00\ud800', '🍕'),
    fc.string({ maxLength: 20 }),
  )
  .map((parts) => parts.join(''));
const text = (maxLength: number) =>
  fc.oneof(
    { arbitrary: fc.string({ maxLength }), weight: 3 },
    { arbitrary: fc.string({ maxLength, unit: 'binary' }), weight: 1 },
    { arbitrary: hostileText, weight: 2 },
  );
const transactionish = fc.record(
  {
    date: fc.oneof(fc.constantFrom('2026-04-03', '2026-02-30', '', '20260403'), junk, fc.integer()),
    description: fc.oneof(text(600), fc.integer(), fc.constant(null)),
    amount: fc.oneof(fc.double(), fc.integer(), junk, fc.constant(null)),
    currency: fc.oneof(fc.constantFrom('USD', 'usd', 'XXX', 'EURO'), junk, hostileText),
    mcc: fc.oneof(fc.constantFrom('5411', '541', 'abcd'), fc.integer(), hostileText),
    reference: fc.oneof(text(250), fc.integer()),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);
// Only literal addresses and localhost: no fuzzed host name reaches DNS.
const webhookish = fc.record(
  {
    url: fc.oneof(
      fc.constantFrom(
        'https://93.184.216.34/hook',
        'https://127.0.0.1/hook',
        'http://10.0.0.1/x',
        'https://localhost/x',
        'https://[::ffff:169.254.169.254]/',
        'ftp://93.184.216.34/',
        'not a url',
        '',
      ),
      fc.integer(),
    ),
    events: fc.oneof(
      fc.subarray(['job.succeeded', 'job.failed', 'job.canceled', 'batch.completed']),
      fc.array(junk, { maxLength: 3 }),
      junk,
    ),
    description: fc.oneof(fc.string({ maxLength: 600 }), fc.constant(null), fc.integer()),
    enabled: fc.oneof(fc.boolean(), junk),
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  transactionish.map((t) => JSON.stringify(t)),
  webhookish.map((w) => JSON.stringify(w)),
  fc
    .array(transactionish, { maxLength: 5 })
    .map((transactions) => JSON.stringify({ transactions })),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  fc.constant(undefined),
);

const headers = fc.record(
  {
    'content-type': fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/merge-patch+json',
        '',
      ),
      printable,
    ),
    'idempotency-key': printable,
    prefer: fc.oneof(
      fc.constantFrom('wait=0', 'wait=1', 'wait=999999', 'respond-async'),
      printable,
    ),
    'if-none-match': fc.oneof(fc.constant('*'), printable),
    'x-request-id': printable,
    accept: fc.constantFrom('application/json', 'text/html', '*/*'),
    // The body is never really compressed: every encoding but identity must fail to decode.
    // Mostly absent ('' is dropped), so most bodies still get to validation.
    'content-encoding': fc.oneof(
      { arbitrary: fc.constant(''), weight: 5 },
      { arbitrary: fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-zip'), weight: 1 },
    ),
  },
  { requiredKeys: [] },
);

// Mostly client "a"'s key, so most runs get past authentication; also another client's, a
// revoked one, none, and junk.
const credential = fc.oneof(
  { arbitrary: fc.constant({ kind: 'valid' as const }), weight: 8 },
  { arbitrary: fc.constantFrom('other' as const, 'revoked' as const, 'none' as const), weight: 2 },
  { arbitrary: printable.map((raw) => ({ kind: 'raw' as const, raw })), weight: 1 },
  {
    arbitrary: fc
      .string({ maxLength: 43 })
      .map((raw) => ({ kind: 'raw' as const, raw: `Bearer mn_0123456789ab_${raw}` })),
    weight: 1,
  },
);

// Weighted towards the methods the routes answer, so most runs get past routing; also methods
// no route implements (the router's 501), which must be a 405 or 404 like any other.
const method = fc.oneof(
  { arbitrary: fc.constantFrom('GET', 'POST'), weight: 6 },
  { arbitrary: fc.constant('DELETE'), weight: 2 },
  { arbitrary: fc.constantFrom('PUT', 'PATCH', 'HEAD', 'OPTIONS'), weight: 1 },
  {
    arbitrary: fc.constantFrom('TRACE', 'PROPFIND', 'MKCOL', 'LOCK', 'PURGE', 'SEARCH'),
    weight: 1,
  },
);

/** One request over a socket: fetch refuses TRACE and some bodies, http.request sends anything. */
function send(
  url: string,
  opts: { method: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    // Framed explicitly: Node frames no body of its own accord for DELETE, OPTIONS, TRACE, ...
    const headers =
      opts.body === undefined
        ? opts.headers
        : { ...opts.headers, 'content-length': String(Buffer.byteLength(opts.body)) };
    const req = http.request(url, { method: opts.method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('fuzzing every route', function () {
  this.timeout(180_000);
  let h: Harness;
  let server: http.Server;
  let base: string;
  let other: string;
  let revoked: IssuedKey;

  before(async () => {
    // The runner stays stopped: accepted jobs stay pending, and nothing but requests runs.
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const handle = h.app.callback();
    server = http.createServer((req, res) => void handle(req, res)).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    other = (await issueKey(h.db, 'b')).key;
    revoked = await issueKey(h.db, 'a');
    await revokeKey(h.db, revoked.keyId);
    await h.store.insertBatch({
      id: KNOWN_BATCH,
      clientId: await clientId(h.db, 'a'),
      transactions: [tx('Netflix'), tx('Spotify')],
      jobIds: [newId(), newId()],
      maxAttempts: 3,
    });
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await h.stop();
  });

  const jobCount = () => rowCount(h.db, 'jobs');

  it(`never answers 5xx, always problem+json on errors, and rejected requests create no job (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        method,
        path,
        query,
        headers,
        body,
        credential,
        async (m, p, q, hs, b, c) => {
          const before = await jobCount();
          const authorization =
            typeof c === 'object'
              ? c.kind === 'valid'
                ? `Bearer ${h.key.key}`
                : c.raw
              : { other: `Bearer ${other}`, revoked: `Bearer ${revoked.key}`, none: '' }[c];
          const sendsBody = m !== 'GET' && m !== 'HEAD' && b !== undefined;
          const cleanHeaders = Object.fromEntries(
            Object.entries(hs).filter(
              ([k, v]) => v !== '' && (k !== 'prefer' || !/wait/i.test(v) || /wait=[01]\b/.test(v)),
            ),
          );
          const res = await send(`${base}${p}${q}`, {
            method: m,
            headers: authorization ? { ...cleanHeaders, authorization } : cleanHeaders,
            body: sendsBody ? b : undefined,
          });
          const text = res.text;
          const where = `${m} ${p}${q} -> ${res.status} ${text.slice(0, 300)}`;
          expect(res.status, where).to.be.below(500);
          const keyless =
            authorization !== `Bearer ${h.key.key}` && authorization !== `Bearer ${other}`;
          // OPTIONS answers which methods a path allows, to anyone; it reveals no data.
          if (keyless && res.status < 400 && m !== 'OPTIONS') {
            // As the router sees it: the URL resolves dot segments (`/batches/..` is `/`), and
            // the router matches a run of slashes as one (`//` is the dashboard at `/`).
            const requested = new URL(`${base}${p}`).pathname.replace(/\/{2,}/g, '/');
            expect(requested, `answered without a valid key: ${where}`).to.match(OPEN_PATHS);
          }
          expect(res.headers['x-request-id'], where).to.be.a('string');
          if (res.status >= 400) {
            if (m !== 'HEAD') {
              expect(res.headers['content-type'], where).to.match(/^application\/problem\+json/);
              const problem = JSON.parse(text) as {
                type: unknown;
                title: unknown;
                status: unknown;
              };
              expect(problem.status, where).to.equal(res.status);
              expect(problem.type, where).to.be.a('string');
              expect(problem.title, where).to.be.a('string');
              expect(text, where).not.to.match(/\bat .+\.(ts|js):\d+/); // no stack traces
            }
            expect(await jobCount(), `rejected but stored: ${where}`).to.equal(before);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  // Well-formed requests but for one hostile value, so that value reaches the database (the
  // property above rarely builds a request valid enough to get there).
  const wellFormed = fc.oneof(
    fc
      .record(
        { description: fc.oneof(hostileText, fc.constant('Netflix')), reference: hostileText },
        { requiredKeys: ['description'] },
      )
      .map((fields) => ({
        method: 'POST',
        path: '/normalize_merchant',
        body: JSON.stringify(tx(fields.description, fields)),
      })),
    fc.array(hostileText, { minLength: 1, maxLength: 3 }).map((texts) => ({
      method: 'POST',
      path: '/normalize_merchant/batch',
      body: JSON.stringify({ transactions: texts.map((t) => tx(t)) }),
    })),
    cursor.map((c) => ({ method: 'GET', path: `/jobs?cursor=${c}`, body: undefined })),
    cursor.map((c) => ({
      method: 'GET',
      path: `/batches/${KNOWN_BATCH}/results?cursor=${c}`,
      body: undefined,
    })),
  );

  it(`never answers 5xx when a hostile text or cursor reaches the database (${RUNS / 10} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(wellFormed, async ({ method: m, path: p, body: b }) => {
        const before = await jobCount();
        const res = await send(`${base}${p}`, {
          method: m,
          headers: { authorization: `Bearer ${h.key.key}`, 'content-type': 'application/json' },
          body: b,
        });
        const where = `${m} ${p} ${b ?? ''} -> ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, where).to.be.oneOf([200, 202, 400, 422]);
        if (res.status >= 400) {
          expect(res.headers['content-type'], where).to.match(/^application\/problem\+json/);
          expect(await jobCount(), `rejected but stored: ${where}`).to.equal(before);
        }
      }),
      { numRuns: Math.ceil(RUNS / 10) },
    );
  });
});
