/**
 * Richer answers through the API: `result.merchant.id` and `result.intermediaries`, as the
 * bundled heuristic computes them, stored, served from the cache and documented.
 */
import { expect } from 'chai';
import { createMockHeuristic } from '../src/heuristic/mock.js';
import { createAjv } from '../src/http/validation.js';
import { type Harness, startHarness } from './support/harness.js';
import { tx } from './support/heuristics.js';

const sushiGo = {
  merchant: { name: 'Sushi Go', id: 'sushi-go' },
  intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
};

describe('job results: merchant id and intermediaries', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      heuristic: createMockHeuristic({ delayMs: { min: 0, max: 0 }, failureRate: 0 }),
    });
  });
  after(() => h.stop());

  const validate = (schema: string, body: unknown) => {
    const ajv = createAjv();
    const check = ajv.getSchema(schema);
    if (!check) throw new Error(`no schema ${schema}`);
    return check(body) ? null : ajv.errorsText(check.errors);
  };

  it('GET /jobs/{id} carries merchant.id and intermediaries, matching the documented schema', async () => {
    const res = await h.http
      .post('/normalize_merchant')
      .set('Prefer', 'wait=10')
      .send(tx('PAYPAL *SUSHI GO 813-993-1809 CA'))
      .expect(200);
    expect(res.body.result).to.deep.equal(sushiGo);
    expect(validate('Job', res.body)).to.equal(null);
    const read = await h.http.get(`/jobs/${res.body.id}`).expect(200);
    expect(read.body.result).to.deep.equal(sushiGo);
  });

  it('an answer from the result cache keeps its intermediaries', async () => {
    await h.http
      .post('/normalize_merchant')
      .set('Prefer', 'wait=10')
      .send(tx('PAYPAL *VINYL CO'))
      .expect(200);
    // Another spelling of the same answer: found in the cache at submit, no heuristic call.
    const cached = await h.http
      .post('/normalize_merchant')
      .send(tx('PayPal *Vinyl Co 800-555-0101 CA'))
      .expect(202);
    expect(cached.body.status).to.equal('succeeded');
    expect(cached.body.attempts).to.equal(0);
    expect(cached.body.result).to.deep.equal({
      merchant: { name: 'Vinyl Co', id: 'vinyl-co' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
    });
  });

  it('batch results carry them too', async () => {
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .set('Prefer', 'wait=10')
      .send({ transactions: [tx('GRUBHUB*JDACTF 834-678-7722'), tx('SQ *12345')] })
      .expect(200);
    const results = await h.http.get(`/batches/${batch.body.id}/results`).expect(200);
    expect(results.body.items.map((i: { result: unknown }) => i.result)).to.deep.equal([
      { merchant: { name: 'Grubhub', id: 'grubhub' }, intermediaries: [] },
      { merchant: null, intermediaries: [{ id: 'square', name: 'Square', kind: 'processor' }] },
    ]);
    expect(validate('BatchResults', results.body)).to.equal(null);
  });

  it('the OpenAPI document describes them, and the schema refuses what it does not describe', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    const result = api.components.schemas.MerchantResult;
    expect(result.properties.intermediaries.items.required).to.deep.equal(['id', 'name', 'kind']);
    expect(result.properties.intermediaries.items.properties.kind.enum).to.deep.equal([
      'processor',
      'platform',
    ]);
    expect(result.properties.merchant.oneOf[0].properties).to.have.keys('name', 'id');
    // Results stored before ids existed stay valid...
    expect(validate('MerchantResult', { merchant: { name: 'Netflix' } })).to.equal(null);
    // ...but a wrong kind, an id that is not a slug, or an unknown field are not.
    const bad = [
      { merchant: null, intermediaries: [{ id: 'x', name: 'X', kind: 'bank' }] },
      { merchant: { name: 'Sushi Go', id: 'Sushi Go' } },
      { merchant: { name: 'Sushi Go' }, processor: 'PayPal' },
    ];
    for (const body of bad)
      expect(validate('MerchantResult', body), JSON.stringify(body)).to.be.a('string');
  });
});
