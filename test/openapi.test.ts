import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'chai';
import type { OpenAPIV3_1 } from 'openapi-types';
import { createAjv } from '../src/http/validation.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

describe('OpenAPI and docs', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
  });
  after(() => h.stop());

  it('serves an OpenAPI 3.1 document that a real validator accepts', async () => {
    const res = await h.http.get('/openapi.json').expect(200);
    expect(res.body.openapi).to.equal('3.1.0');
    // validate() dereferences in place: give it a copy.
    const api = (await SwaggerParser.validate(structuredClone(res.body))) as OpenAPIV3_1.Document;
    expect(Object.keys(api.paths ?? {})).to.include.members([
      '/normalize_merchant',
      '/normalize_merchant/batch',
      '/jobs',
      '/jobs/{id}',
      '/batches/{id}',
      '/batches/{id}/results',
      '/batches',
      '/stats',
    ]);
    // And it is a validator that can fail: the same document, broken, is refused.
    const broken = structuredClone(res.body);
    delete broken.paths['/jobs/{id}'].get.responses['200'].description;
    let refused: unknown;
    await SwaggerParser.validate(broken).catch((err: unknown) => (refused = err));
    expect(String(refused)).to.match(/description/);
  });

  it('describes the bodies with the very schemas the service validates with', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    const transaction = api.components.schemas.Transaction;
    expect(transaction.required).to.deep.equal(['date', 'description', 'amount']);
    expect(transaction.additionalProperties).to.equal(false);
    expect(api.components.schemas.BatchRequest.properties.transactions.items).to.deep.equal({
      $ref: '#/components/schemas/Transaction',
    });
    const waitParam = api.paths['/jobs/{id}'].get.parameters.find(
      (p: { name: string }) => p.name === 'wait',
    );
    expect(waitParam.schema).to.include({ type: 'integer', minimum: 0, maximum: 60 });
  });

  it('answers match the documented response schemas', async () => {
    const ajv = createAjv();
    const check = (schema: string, body: unknown) => {
      const validate = ajv.getSchema(schema);
      if (!validate) throw new Error(`no schema ${schema}`);
      expect(validate(body), `${schema}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
    };
    const job = await h.http
      .post('/normalize_merchant')
      .set('Prefer', 'wait=10')
      .send(tx('Netflix', { currency: 'EUR', mcc: '4899', reference: 'r1' }))
      .expect(200);
    check('Job', job.body);
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .set('Prefer', 'wait=10')
      .send({ transactions: [tx('A'), tx('B')] })
      .expect(200);
    check('Batch', batch.body);
    check('Batch', (await h.http.get(`/batches/${batch.body.id}`).expect(200)).body);
    check('BatchResults', (await h.http.get(`/batches/${batch.body.id}/results`)).body);
    check('JobList', (await h.http.get('/jobs?limit=2').expect(200)).body);
    check('BatchList', (await h.http.get('/batches?limit=2').expect(200)).body);
    check('Stats', (await h.http.get('/stats').expect(200)).body);
    check('Job', (await h.http.get(`/jobs/${batch.body.job_ids[0]}`).expect(200)).body);
    check('Problem', (await h.http.post('/normalize_merchant').send({}).expect(422)).body);
    check('Problem', (await h.http.get('/jobs?limit=x').expect(400)).body);
  });

  it('serves a docs page whose assets all come from this server', async () => {
    const page = await h.http.get('/docs').expect(200);
    expect(page.headers['content-type']).to.match(/^text\/html/);
    expect(page.headers['content-security-policy']).to.contain("default-src 'self'");
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
    expect(assets).to.have.length.at.least(3);
    for (const asset of assets) {
      expect(asset, 'no CDN').to.match(/^\/docs\//);
      const res = await h.http.get(asset).expect(200);
      expect(Number(res.headers['content-length'] ?? res.text?.length ?? 0)).to.be.above(0);
    }
    const init = await h.http.get('/docs/init.js').expect(200);
    expect(init.text).to.contain("url: '/openapi.json'");
    await h.http.get('/docs/assets/package.json').expect(404);
    await h.http.get('/docs/assets/..%2Fpackage.json').expect(404);
  });
});
