/**
 * The example webhook receiver (examples/webhook-receiver.mjs), run as a user would, against
 * the service: it verifies every delivery with the signing secret and prints each event once.
 * The README and docs/push.md show the same file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { freePort } from '../src/net.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';
import { pushConfig } from './support/push.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLE = path.join(ROOT, 'examples/webhook-receiver.mjs');

describe('examples/webhook-receiver.mjs (the receiver the README and docs/push.md show)', () => {
  let started: Harness | undefined;
  let child: ChildProcess | undefined;
  afterEach(async () => {
    child?.kill('SIGKILL');
    await started?.stop();
    started = undefined;
  });

  it('is the code the README and docs/push.md show', () => {
    const code = readFileSync(EXAMPLE, 'utf8');
    expect(readFileSync(path.join(ROOT, 'docs/push.md'), 'utf8')).to.contain(code);
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readme).to.contain(code);
    expect(readme).to.contain('(examples/webhook-receiver.mjs)');
  });

  it('verifies and prints each delivered event once, and refuses a forged one', async () => {
    const h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      config: pushConfig({ webhookRetryScheduleMs: [30, 30] }),
    });
    started = h;
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hook`;
    const created = await h.http.post('/webhooks').send({ url }).expect(201);
    let stdout = '';
    child = spawn(process.execPath, [EXAMPLE], {
      cwd: ROOT,
      env: { ...process.env, WEBHOOK_SECRET: created.body.secret, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    await eventually(async () => stdout.includes('listening'));

    const job = await submitJob(h, 'Netflix');
    await eventually(async () => stdout.includes(`job.succeeded ${job.id} Netflix`));
    // Redelivered: the same webhook-id, so it is not handled twice.
    const log = await eventually(async () => {
      const page = (await h.http.get(`/webhooks/${created.body.id}/deliveries`)).body;
      return page.deliveries[0]?.status === 'delivered' && page;
    });
    await h.http
      .post(`/webhooks/${created.body.id}/deliveries/${log.deliveries[0].id}/redeliver`)
      .expect(202);
    await eventually(
      async () =>
        (await h.http.get(`/webhooks/${created.body.id}/deliveries`)).body.deliveries[0]
          .attempts === 2,
    );
    expect(stdout.split('\n').filter((l) => l.startsWith('job.succeeded'))).to.have.length(1);
    const forged = await fetch(url, {
      method: 'POST',
      headers: {
        'webhook-id': 'msg_1',
        'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
        'webhook-signature': 'v1,AAAA',
      },
      body: '{}',
    });
    expect(forged.status).to.equal(401);
  });
});
