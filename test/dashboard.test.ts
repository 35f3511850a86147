/**
 * The dashboard at `/`, in a real headless browser: Debian's chromium (installed by .ci/run)
 * driven by playwright-core, against the service listening on a port. Also CORS as a browser
 * enforces it, from pages on other origins.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { issueKey } from '../src/auth/keys.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { createLogger } from '../src/log.js';
import { type Service, startService } from '../src/service.js';
import { databaseUrl, eventually, freshDatabase } from './support/db.js';
import { testConfig } from './support/harness.js';
import { Gate, TestHeuristic, tx } from './support/heuristics.js';
import { pushConfig } from './support/push.js';
import { Receiver } from './support/receiver.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const XSS = 'bad <img src=x onerror="window.__xss=1"> descriptor';

/**
 * The browser globals the page functions below touch. The test program is type-checked without
 * the DOM library, so they reach them through `globalThis` with this type (erased at run time).
 */
interface Win {
  document: {
    cookie: string;
    body: { append(node: unknown): void };
    createElement(tag: string): { textContent: string };
    getElementById(id: string): { value?: string } | null;
    addEventListener(
      type: 'securitypolicyviolation',
      listener: (e: { violatedDirective: string; blockedURI: string }) => void,
    ): void;
  };
  sessionStorage: { length: number; getItem(key: string): string | null; key(i: number): string };
  localStorage: { length: number };
  __violation(detail: string): void;
  __xss?: number;
  __inline?: number;
}

/** A blank page on an origin of its own, for calling the API cross-origin. */
async function blankOrigin(): Promise<{ url: string; close: () => void }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>another app</title>');
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => server.close(),
  };
}

/** An hour of finished jobs for the key's client, for the screenshot only. */
async function seedHistory(db: Knex, apiKey: string) {
  await db.raw(
    `INSERT INTO jobs (id, client_id, status, transaction, result, error, attempts, max_attempts,
                       created_at, started_at, finished_at)
     SELECT gen_random_uuid(), k.client_id, s.status,
            '{"date": "2026-04-03", "description": "NETFLIX.COM", "amount": 15.49}',
            CASE WHEN s.status = 'succeeded' THEN '{"merchant": {"name": "Netflix"}}'::jsonb END,
            CASE WHEN s.status = 'failed' THEN
              '{"code": "timeout", "message": "timed out after 60000 ms", "attempt": 3}'::jsonb END,
            CASE WHEN s.status = 'failed' THEN 3 ELSE 1 END, 3,
            s.finished - s.latency, s.finished - s.latency / 3, s.finished
     FROM api_keys k, (
       SELECT now() - make_interval(mins => m) - random() * interval '59 seconds' AS finished,
              make_interval(secs => 3 + random() * 12 + 6 * sin(m / 9.0) + 6) AS latency,
              CASE WHEN random() < 0.03 THEN 'failed' ELSE 'succeeded' END AS status
       FROM generate_series(1, 59) m, generate_series(1, (30 + 18 * sin(m / 7.0))::int) n
     ) s
     WHERE k.id = ?`,
    [apiKey.slice(3, 15)],
  );
}

describe('dashboard (GET /) in headless Chromium', function () {
  this.timeout(120_000);
  let db: Knex;
  let service: Service;
  let url: string;
  let key: string;
  let context: BrowserContext;
  let profile: string;
  let allowed: Awaited<ReturnType<typeof blankOrigin>>;
  let other: Awaited<ReturnType<typeof blankOrigin>>;
  const gate = new Gate();

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing (see .ci/run)`);
      console.warn(`  skipped: no ${CHROMIUM} (apt-get install -y chromium)`);
      this.skip();
    }
    allowed = await blankOrigin();
    other = await blankOrigin();
    db = await freshDatabase();
    const heuristic = new TestHeuristic(async (t, signal, call) => {
      if (t.description.startsWith('bad')) throw new NonRetryableError('unreadable descriptor');
      if (t.description.startsWith('slow')) return gate.behaviour(t, signal, call);
      await sleep(20, undefined, { signal });
      return { name: t.description };
    });
    service = await startService(
      testConfig(databaseUrl(db), {
        jobMaxAttempts: 1,
        // The gated "slow" jobs stay running until after(): timed out (5 s by default) they
        // failed in the middle of a later test, and their events reached its webhooks.
        runner: { timeoutMs: 600_000 },
        // Loopback receivers; a failed delivery waits a minute, so it stays pending here.
        config: { corsOrigins: [allowed.url], ...pushConfig({ webhookRetryScheduleMs: [60_000] }) },
      }),
      { log: createLogger('silent'), heuristic },
    );
    url = service.url ?? '';
    key = (await issueKey(db, 'a')).key;
    profile = await fs.mkdtemp(path.join(os.tmpdir(), 'mn-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1200, height: 900 },
    });
  });

  after(async () => {
    await context?.close();
    gate.release();
    await service?.stop();
    await db?.destroy();
    allowed?.close();
    other?.close();
    if (profile) await fs.rm(profile, { recursive: true, force: true });
  });

  /** A new tab that records CSP violations, console errors, and every URL it requests. */
  async function openTab() {
    const page = await context.newPage();
    const seen = { violations: [] as string[], errors: [] as string[], requests: [] as string[] };
    page.on('console', (m) => {
      if (m.type() === 'error') seen.errors.push(m.text());
    });
    page.on('pageerror', (e) => seen.errors.push(String(e)));
    page.on('request', (r) => seen.requests.push(r.url()));
    await page.exposeFunction('__violation', (d: string) => seen.violations.push(d));
    await page.addInitScript(() => {
      const w = globalThis as unknown as Win;
      w.document.addEventListener('securitypolicyviolation', (e) =>
        w.__violation(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
    return { page, seen };
  }

  const text = async (page: Page, selector: string) =>
    ((await page.locator(selector).textContent()) ?? '').replace(/\s+/g, ' ').trim();

  it('shows counts, batches with progress bars, failures and charts for the pasted key', async () => {
    const done = await fetch(`${url}/normalize_merchant/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        transactions: ['Netflix', 'Spotify', 'Uber', 'Lyft', XSS, 'bad two'].map((d) => tx(d)),
      }),
    }).then((r) => r.json() as Promise<{ id: string }>);
    const busy = await fetch(`${url}/normalize_merchant/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        transactions: ['Amazon', 'Walmart', 'slow one', 'slow two'].map((d) => tx(d)),
      }),
    }).then((r) => r.json() as Promise<{ id: string }>);
    const batch = async (id: string) =>
      (await fetch(`${url}/batches/${id}`, { headers: { authorization: `Bearer ${key}` } }).then(
        (r) => r.json(),
      )) as { done: boolean; finished: number };
    await eventually(async () => (await batch(done.id)).done, 20_000, 'the first batch');
    await eventually(async () => (await batch(busy.id)).finished === 2, 20_000, 'two of four');

    const { page, seen } = await openTab();
    await page.goto(`${url}/`);
    expect(await page.locator('#main').isHidden(), 'nothing shown before a key').to.equal(true);
    await page.fill('#key', key);
    await page.click('button[type=submit]');
    await page.waitForSelector('#batches tbody tr[data-batch]');
    await page.waitForSelector('#failures tbody tr[data-job]');

    // Counts: pending and running now, finished in the last hour.
    const tile = (name: string) => text(page, `#counts [data-count=${name}] dd`);
    expect(await tile('running')).to.equal('2');
    expect(await tile('pending')).to.equal('0');
    expect(await tile('succeeded')).to.equal('6');
    expect(await tile('failed')).to.equal('2');
    expect(await tile('p50')).to.match(/^\d+ ms$/);
    expect(await tile('p95')).to.match(/^\d+ ms$/);

    // Batches, newest first, with progress bars.
    const bars = await page
      .locator('#batches tbody tr')
      .evaluateAll((rows) =>
        rows.map((r) => [
          r.getAttribute('data-batch'),
          r.querySelector('progress')?.getAttribute('value'),
          r.querySelector('progress')?.getAttribute('max'),
          r.querySelector('td.progress span')?.textContent,
        ]),
      );
    expect(bars).to.deep.equal([
      [busy.id, '2', '4', '50 %'],
      [done.id, '6', '6', 'done'],
    ]);

    // Failures with their errors; a description is text, never markup.
    const failures = await page
      .locator('#failures tbody tr')
      .evaluateAll((rows) =>
        rows.map((r) => [
          r.querySelector('td.description')?.textContent,
          r.querySelector('td.error')?.textContent,
        ]),
      );
    expect(failures).to.have.deep.members([
      [XSS, 'non_retryable unreadable descriptor'],
      ['bad two', 'non_retryable unreadable descriptor'],
    ]);
    expect(await page.locator('#failures img').count()).to.equal(0);
    expect(await page.evaluate(() => (globalThis as unknown as Win).__xss)).to.equal(undefined);

    // Charts: the bars add up to the jobs finished this hour; latency has both lines.
    const finishedInChart = await page
      .locator('#throughput svg rect.bar')
      .evaluateAll((rects) => rects.reduce((n, r) => n + Number(r.getAttribute('data-count')), 0));
    expect(finishedInChart).to.equal(8);
    expect(await page.locator('#throughput svg rect.bar.bad').count()).to.be.at.least(1);
    expect(await page.locator('#latency svg path.line.p50').count()).to.equal(1);
    expect(await page.locator('#latency svg path.line.p95').count()).to.equal(1);
    expect(await text(page, '#endpoints')).to.contain('Endpoint health');

    // The page's own files and this API only (no CDN), and nothing its CSP refused.
    expect(
      seen.requests.every((u) => u.startsWith(`${url}/`)),
      seen.requests.join('\n'),
    ).to.equal(true);
    expect(seen.requests).to.include.members([
      `${url}/dashboard/app.js`,
      `${url}/dashboard/app.css`,
      `${url}/stats?window=1h`,
      `${url}/batches?limit=10`,
    ]);
    expect(seen.violations, 'CSP violations').to.deep.equal([]);
    expect(seen.errors, 'console errors').to.deep.equal([]);

    // And the CSP is strict: an inline script is refused.
    await page.evaluate(() => {
      const { document } = globalThis as unknown as Win;
      const s = document.createElement('script');
      s.textContent = 'window.__inline = 1';
      document.body.append(s);
    });
    await eventually(async () => seen.violations.length > 0, 5000, 'a CSP violation');
    expect(seen.violations[0]).to.match(/^script-src/);
    expect(await page.evaluate(() => (globalThis as unknown as Win).__inline)).to.equal(undefined);

    // `DASHBOARD_SCREENSHOT=docs/dashboard.png` makes the README's picture: with an hour of
    // made-up history, so the charts have something to show. Nothing is asserted after this.
    const screenshot = process.env.DASHBOARD_SCREENSHOT;
    if (screenshot) {
      await seedHistory(db, key);
      await page.reload();
      await page.waitForSelector('#batches tbody tr[data-batch]');
      await page.screenshot({ path: screenshot, fullPage: true });
    }
    await page.close();
  });

  it("shows each webhook endpoint's health: state, last success and failure, streak, backlog, why", async () => {
    const healthy = await Receiver.start();
    const broken = await Receiver.start();
    broken.answer = () => ({ status: 500 });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return (await res.json()) as Record<string, unknown>;
    };
    try {
      const ok = await call('POST', '/webhooks', {
        url: `${healthy.url}/hook`,
        description: 'ledger sync',
      });
      const bad = await call('POST', '/webhooks', { url: `${broken.url}/hook`, description: XSS });
      const off = await call('POST', '/webhooks', { url: `${healthy.url}/off` });
      await call('PATCH', `/webhooks/${String(off.id)}`, { enabled: false });
      await call('POST', '/normalize_merchant', tx('Netflix'));
      await eventually(
        async () => {
          const a = await call('GET', `/webhooks/${String(ok.id)}`);
          const b = await call('GET', `/webhooks/${String(bad.id)}`);
          return a.last_success_at !== null && b.pending_deliveries === 1 && b.failing_since;
        },
        20_000,
        'a delivery to each endpoint',
      );

      const { page, seen } = await openTab();
      await page.goto(`${url}/`);
      await page.fill('#key', key);
      await page.click('button[type=submit]');
      await page.waitForSelector(`#webhooks tbody tr[data-webhook="${String(bad.id)}"]`);
      const rows = await page.locator('#webhooks tbody tr').evaluateAll((trs) =>
        trs.map((r) => ({
          id: r.getAttribute('data-webhook'),
          state: r.querySelector('td.state')?.getAttribute('data-state'),
          stateText: r.querySelector('td.state')?.textContent,
          description: r.querySelector('td.endpoint small')?.textContent ?? null,
          success: r.querySelector('td.last-success')?.textContent,
          failure: r.querySelector('td.last-failure')?.textContent,
          streak: r.querySelector('td.streak')?.textContent,
          waiting: r.querySelector('td.waiting')?.textContent,
          error: r.querySelector('td.error')?.textContent,
        })),
      );
      expect(rows.map((r) => [r.id, r.state, r.stateText])).to.deep.equal([
        [ok.id, 'healthy', 'healthy'],
        [bad.id, 'failing', 'failing'],
        [off.id, 'disabled', 'disabled (manual)'],
      ]);
      const [okRow, badRow, offRow] = rows;
      expect(okRow).to.include({
        description: 'ledger sync',
        failure: '–',
        streak: '–',
        waiting: '0',
      });
      expect(okRow?.success).to.not.equal('–');
      // The failing one: since when, how many wait, and what its receiver answered.
      expect(badRow).to.include({ description: XSS, success: '–', waiting: '1' });
      expect(badRow?.failure).to.not.equal('–');
      expect(badRow?.streak).to.match(/min$/);
      expect(badRow?.error).to.match(/^500\b/);
      expect(offRow).to.include({ success: '–', failure: '–', waiting: '0' });
      // A description is text, never markup.
      expect(await page.locator('#webhooks img').count()).to.equal(0);
      expect(await page.evaluate(() => (globalThis as unknown as Win).__xss)).to.equal(undefined);
      expect(seen.requests).to.include.members([
        `${url}/webhooks`,
        `${url}/webhooks/${String(bad.id)}/deliveries?limit=1`,
      ]);
      expect(seen.violations, 'CSP violations').to.deep.equal([]);
      expect(seen.errors, 'console errors').to.deep.equal([]);
      await page.close();
    } finally {
      await healthy.close();
      await broken.close();
    }
  });

  it('keeps the key in sessionStorage only: kept across a reload, gone in a new tab', async () => {
    const { page } = await openTab();
    await page.goto(`${url}/`);
    await page.fill('#key', key);
    await page.click('button[type=submit]');
    await page.waitForSelector('#batches tbody tr');
    const storage = await page.evaluate(() => {
      const w = globalThis as unknown as Win;
      const session = Array.from({ length: w.sessionStorage.length }, (_, i) =>
        w.sessionStorage.getItem(w.sessionStorage.key(i)),
      );
      return {
        session,
        local: w.localStorage.length,
        cookies: w.document.cookie,
        field: w.document.getElementById('key')?.value,
      };
    });
    expect(storage).to.deep.equal({ session: [key], local: 0, cookies: '', field: '' });

    await page.reload();
    await page.waitForSelector('#batches tbody tr');
    expect(await page.locator('#main').isVisible()).to.equal(true);

    const fresh = await context.newPage();
    await fresh.goto(`${url}/`);
    expect(await fresh.locator('#main').isHidden(), 'a new tab asks again').to.equal(true);
    await fresh.close();

    await page.click('#forget');
    expect(
      await page.evaluate(() => (globalThis as unknown as Win).sessionStorage.length),
    ).to.equal(0);
    expect(await page.locator('#main').isHidden()).to.equal(true);
    await page.close();
  });

  it('says so when the key is refused, and asks again', async () => {
    const { page } = await openTab();
    await page.goto(`${url}/`);
    await page.fill('#key', 'mn_000000000000_not-a-key');
    await page.click('button[type=submit]');
    await page.waitForSelector('#notice.error');
    expect(await text(page, '#notice')).to.contain('The key was refused (401)');
    expect(await page.locator('#main').isHidden()).to.equal(true);
    expect(
      await page.evaluate(() => (globalThis as unknown as Win).sessionStorage.length),
    ).to.equal(0);
    await page.close();
  });

  it('lets a page on a CORS_ORIGINS origin submit and read Location; another origin cannot', async () => {
    const call = (page: Page) =>
      page.evaluate(
        async ({ api, apiKey }) => {
          try {
            const res = await fetch(`${api}/normalize_merchant`, {
              method: 'POST',
              headers: {
                authorization: `Bearer ${apiKey}`,
                'content-type': 'application/json',
                'idempotency-key': `"cors-${Math.random()}"`,
              },
              body: JSON.stringify({ date: '2026-04-03', description: 'Netflix', amount: 1 }),
            });
            return {
              status: res.status,
              location: res.headers.get('location'),
              retryAfter: res.headers.get('retry-after'),
            };
          } catch (err) {
            return { error: String(err) };
          }
        },
        { api: url, apiKey: key },
      );
    const page = await context.newPage();
    await page.goto(`${allowed.url}/`);
    const ok = await call(page);
    expect(ok).to.have.property('status', 202);
    expect((ok as { location: string }).location).to.match(/^\/jobs\/[0-9a-f-]{36}$/);

    await page.goto(`${other.url}/`);
    expect(await call(page)).to.deep.equal({ error: 'TypeError: Failed to fetch' });
    await page.close();
  });
});
