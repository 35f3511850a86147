/**
 * Property: whatever a client sends (method, path, id, query string, headers, body), the
 * service never answers 5xx, every error is problem+json naming its own status, and a rejected
 * request creates no job.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import fc from 'fast-check';
import { type IssuedKey, issueKey, revokeKey } from '../src/auth/keys.js';
import { rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';

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

const id = fc.oneof(uuid, junk.map(encodeURIComponent), fc.constantFrom('', '..', '%', '%zz', '0'));
const path = fc.oneof(
  fc.constant('/normalize_merchant'),
  fc.constant('/normalize_merchant/batch'),
  fc.constant('/jobs'),
  id.map((i) => `/jobs/${i}`),
  id.map((i) => `/batches/${i}`),
  id.map((i) => `/batches/${i}/results`),
  fc.constantFrom('/healthz', '/readyz', '/openapi.json', '/docs', '/docs/assets/x', '/'),
  fc.constantFrom('/stats', '/batches', '/dashboard/app.js', '/dashboard/x'),
  fc.webPath(),
);

const queryValue = fc.oneof(
  fc.integer({ min: -5, max: 2000 }).map(String),
  fc.constantFrom('pending', 'failed,canceled', 'done', '', '1.5', 'NaN', 'bm9wZQ', 'c2VxOjE'),
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
    const s = new URLSearchParams(q).toString();
    return s ? `?${s}` : '';
  });

const transactionish = fc.record(
  {
    date: fc.oneof(fc.constantFrom('2026-04-03', '2026-02-30', '', '20260403'), junk, fc.integer()),
    description: fc.oneof(fc.string({ maxLength: 600 }), fc.integer(), fc.constant(null)),
    amount: fc.oneof(fc.double(), fc.integer(), junk, fc.constant(null)),
    currency: fc.oneof(fc.constantFrom('USD', 'usd', 'XXX', 'EURO'), junk),
    mcc: fc.oneof(fc.constantFrom('5411', '541', 'abcd'), fc.integer()),
    reference: fc.oneof(fc.string({ maxLength: 250 }), fc.integer()),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  transactionish.map((t) => JSON.stringify(t)),
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

// Weighted towards the methods the routes answer, so most runs get past routing.
const method = fc.oneof(
  { arbitrary: fc.constantFrom('GET', 'POST'), weight: 6 },
  { arbitrary: fc.constant('DELETE'), weight: 2 },
  { arbitrary: fc.constantFrom('PUT', 'PATCH', 'HEAD', 'OPTIONS'), weight: 1 },
);

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
          const res = await fetch(`${base}${p}${q}`, {
            method: m,
            headers: authorization ? { ...cleanHeaders, authorization } : cleanHeaders,
            body: sendsBody ? b : undefined,
            signal: AbortSignal.timeout(10_000),
          });
          const text = await res.text();
          const where = `${m} ${p}${q} -> ${res.status} ${text.slice(0, 300)}`;
          expect(res.status, where).to.be.below(500);
          const keyless =
            authorization !== `Bearer ${h.key.key}` && authorization !== `Bearer ${other}`;
          // OPTIONS answers which methods a path allows, to anyone; it reveals no data.
          if (keyless && res.status < 400 && m !== 'OPTIONS') {
            // As requested: the URL resolves dot segments (`/batches/..` is `/`).
            const requested = new URL(`${base}${p}`).pathname;
            expect(requested, `answered without a valid key: ${where}`).to.match(OPEN_PATHS);
          }
          expect(res.headers.get('x-request-id'), where).to.be.a('string');
          if (res.status >= 400) {
            if (m !== 'HEAD') {
              expect(res.headers.get('content-type'), where).to.match(
                /^application\/problem\+json/,
              );
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
});
