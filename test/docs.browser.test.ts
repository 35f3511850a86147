/**
 * The API docs page (`/docs`, Swagger UI from swagger-ui-dist) in a real headless browser:
 * Debian's chromium driven by playwright-core, as in test/dashboard.test.ts. It renders the
 * document's operations under its tags, with no warning or error banner (Swagger UI 5 shows a
 * red one for a `jsonSchemaDialect` other than the OpenAPI default, as this document once had).
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { serve } from './support/sse.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'];

describe('API docs (GET /docs) in headless Chromium', function () {
  this.timeout(120_000);
  let h: Harness;
  let server: Awaited<ReturnType<typeof serve>>;
  let context: BrowserContext;
  let profile: string;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing (see .ci/run)`);
      console.warn(`  skipped: no ${CHROMIUM} (apt-get install -y chromium)`);
      this.skip();
    }
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
    server = await serve(h);
    profile = await fs.mkdtemp(path.join(os.tmpdir(), 'mn-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
    });
  });

  after(async () => {
    await context?.close();
    await server?.close();
    await h?.stop();
    if (profile) await fs.rm(profile, { recursive: true, force: true });
  });

  /** The docs page, rendered: resolves once the operations are on it. */
  async function openDocs(): Promise<{ page: Page; errors: string[] }> {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${server.base}/docs`);
    await page.waitForSelector('.opblock');
    return { page, errors };
  }

  const banners = (page: Page) =>
    page.locator('.errors-wrapper').evaluateAll((els) => els.map((e) => e.textContent ?? ''));

  it('renders every tag and operation with no warning or error banner', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    const { page, errors } = await openDocs();
    try {
      expect(await banners(page)).to.deep.equal([]);
      expect(await page.locator('text=jsonSchemaDialect').count()).to.equal(0);
      const tags = await page
        .locator('.opblock-tag')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-tag')));
      expect(tags).to.deep.equal(api.tags.map((t: { name: string }) => t.name));
      const documented = Object.values(api.paths).flatMap((item) => Object.keys(item as object));
      // Sections start open (docExpansion "list"): every operation of every tag is listed.
      expect(await page.locator('#docs .opblock').count()).to.be.at.least(documented.length);
      expect(errors).to.deep.equal([]);
    } finally {
      await page.close();
    }
  });

  it('would show the banner for a jsonSchemaDialect other than the default (the check can fail)', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    const page = await context.newPage();
    try {
      await page.route('**/openapi.json', (route) =>
        route.fulfill({
          contentType: 'application/json',
          body: JSON.stringify({
            ...api,
            jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
          }),
        }),
      );
      await page.goto(`${server.base}/docs`);
      await page.waitForSelector('.opblock');
      await page.waitForSelector('.errors-wrapper');
      expect((await banners(page)).join(' ')).to.contain('jsonSchemaDialect');
    } finally {
      await page.close();
    }
  });
});
