/**
 * The README's example of an in-process heuristic (examples/in-process-heuristic.ts), plugged
 * into the real service with startService(config, { heuristic }).
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import { tableHeuristic } from '../examples/in-process-heuristic.js';
import { issueKey } from '../src/auth/keys.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { type Service, startService } from '../src/service.js';
import { databaseUrl, freshDatabase } from './support/db.js';

describe('examples/in-process-heuristic.ts through startService(config, { heuristic })', () => {
  let db: Knex;
  let service: Service;
  let key = '';
  before(async () => {
    db = await freshDatabase();
    const config = loadConfig({
      DATABASE_URL: databaseUrl(db),
      PORT: '0',
      HOST: '127.0.0.1',
      JOB_BACKOFF_BASE_MS: '10',
      // Ignored when a heuristic is given: the bundled mock would take seconds per answer.
      HEURISTIC_DELAY_MS: '60000',
    });
    service = await startService(config, {
      log: createLogger('silent'),
      heuristic: tableHeuristic,
    });
    key = (await issueKey(db, 'a')).key;
  });
  after(async () => {
    await service?.stop();
    await db?.destroy();
  });

  async function run(description: string) {
    const res = await fetch(`${service.url ?? ''}/normalize_merchant`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        prefer: 'wait=10',
      },
      body: JSON.stringify({ date: '2026-04-03', description, amount: 4.2 }),
    });
    expect(res.status).to.equal(200);
    return (await res.json()) as {
      status: string;
      attempts: number;
      result: unknown;
      error: unknown;
    };
  }

  it('answers from its own table', async () => {
    const job = await run('ACME CANTEEN 0042 BERLIN');
    expect(job.result).to.deep.equal({
      merchant: { name: 'Acme Canteen', id: 'acme-canteen' },
      intermediaries: [],
    });
  });

  it('falls back to the bundled recogniser', async () => {
    const job = await run('PAYPAL *SUSHI GO');
    expect(job.result).to.deep.equal({
      merchant: { name: 'Sushi Go', id: 'sushi-go' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
    });
  });

  it('fails a job at once with NonRetryableError', async () => {
    const job = await run('ACME TEST 1');
    expect(job).to.deep.include({ status: 'failed', attempts: 1 });
    expect(job.error).to.deep.include({
      code: 'non_retryable',
      message: 'test transactions are refused',
    });
  });
});
