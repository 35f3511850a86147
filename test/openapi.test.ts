import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'chai';
import type { OpenAPIV3_1 } from 'openapi-types';
import { CORS_EXPOSE_HEADERS } from '../src/http/cors.js';
import { createAjv } from '../src/http/validation.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

/** A part of the JSON document, walked by key (as supertest types bodies). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of any shape
type Doc = Record<string, any>;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every operation of the document, `paths` and `webhooks`, named `METHOD where`. */
function operations(api: Doc): [string, Doc][] {
  const all: [string, Doc][] = [];
  for (const section of ['paths', 'webhooks']) {
    for (const [where, item] of Object.entries<Doc>(api[section] ?? {})) {
      for (const method of METHODS) {
        if (item[method]) all.push([`${method.toUpperCase()} ${where}`, item[method]]);
      }
    }
  }
  return all;
}

/** A `$ref` within the document, resolved (once; the document's refs are never chained). */
const resolve = (api: Doc, value: Doc): Doc =>
  typeof value.$ref === 'string'
    ? value.$ref
        .slice(2)
        .split('/')
        .reduce((node: Doc, key: string) => node[key.replace(/~1/g, '/')], api)
    : value;

/** Where in `schema` (following refs) there is an `additionalProperties: false`. */
function closedPlaces(api: Doc, schema: unknown, at: string, seen = new Set<string>()): string[] {
  if (Array.isArray(schema))
    return schema.flatMap((s, i) => closedPlaces(api, s, `${at}/${i}`, seen));
  if (schema === null || typeof schema !== 'object') return [];
  const node = schema as Doc;
  if (typeof node.$ref === 'string') {
    if (seen.has(node.$ref)) return [];
    seen.add(node.$ref);
    return closedPlaces(api, resolve(api, node), node.$ref, seen);
  }
  return [
    ...(node.additionalProperties === false ? [at] : []),
    ...Object.entries(node).flatMap(([k, v]) => closedPlaces(api, v, `${at}/${k}`, seen)),
  ];
}

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

  it('gives every operation a description and tags defined at the top level', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    const tags = new Map<string, string>(
      api.tags.map((t: { name: string; description: string }) => [t.name, t.description]),
    );
    expect(tags.size).to.be.at.least(5);
    for (const description of tags.values()) expect(description).to.be.a('string').and.not.empty;
    const all = operations(api);
    expect(all.length).to.be.above(20);
    const used = new Set<string>();
    for (const [name, op] of all) {
      expect(op.description, `${name}: description`).to.be.a('string').with.length.above(20);
      expect(op.tags, `${name}: tags`).to.be.an('array').that.is.not.empty;
      for (const tag of op.tags) {
        expect(tags.has(tag), `${name}: tag ${tag} is defined`).to.equal(true);
        used.add(tag);
      }
    }
    expect([...used].sort(), 'every tag is used').to.deep.equal([...tags.keys()].sort());
  });

  it('says where the API is served, and sets no jsonSchemaDialect (Swagger UI warns on one)', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    expect(api.servers).to.be.an('array').that.is.not.empty;
    expect(api.servers[0].url).to.equal('/');
    expect(api).not.to.have.property('jsonSchemaDialect');
  });

  it('publishes every answer open and the request bodies closed', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    for (const [name, op] of operations(api)) {
      for (const [status, response] of Object.entries<Doc>(op.responses)) {
        const content = resolve(api, response).content ?? {};
        for (const [type, media] of Object.entries<Doc>(content)) {
          const at = `${name} ${status} ${type}`;
          expect(closedPlaces(api, media.schema, at), 'additionalProperties: false').to.be.empty;
        }
      }
      if (!name.startsWith('POST /') && !name.startsWith('PATCH /')) continue;
      // JSON bodies the service reads: an unknown field is a 422, and the document says so.
      // (File bodies, NDJSON and CSV, are strings to the document: their rules are in prose.)
      for (const [type, media] of Object.entries<Doc>(op.requestBody?.content ?? {})) {
        if (type !== 'application/json') continue;
        expect(resolve(api, media.schema).additionalProperties, `${name} body`).to.equal(false);
      }
    }
    // The webhook payloads are sent by the service: open too.
    expect(closedPlaces(api, api.components.schemas.Event, 'Event')).to.be.empty;
    // A job's transaction is the submitted one, published open beside the closed request body.
    expect(api.components.schemas.Job.properties.transaction).to.deep.equal({
      $ref: '#/components/schemas/SubmittedTransaction',
    });
  });

  it('describes 405 and 500 on every operation, and 401 and 429 wherever a key is needed', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    for (const [name, op] of operations(api).filter(
      ([n]) => !n.includes(' job.') && !n.includes(' batch.'),
    )) {
      const statuses = Object.keys(op.responses);
      expect(statuses, name).to.include.members(['405', '500']);
      if (op.security === undefined) expect(statuses, name).to.include.members(['401', '429']);
      for (const status of ['405', '500', '401', '429'].filter((s) => statuses.includes(s))) {
        const response = resolve(api, op.responses[status]);
        expect(Object.keys(response.content), `${name} ${status}`).to.deep.equal([
          'application/problem+json',
        ]);
      }
    }
  });

  it('declares on each answer the headers the service sends with it', async () => {
    const { body: api } = await h.http.get('/openapi.json').expect(200);
    // Every header a browser app may read (CORS exposes them), and Allow.
    const watched = [...CORS_EXPOSE_HEADERS, 'Allow'].map((n) => n.toLowerCase());
    const seen = new Set<string>();
    const check = (
      method: string,
      path: string,
      res: { status: number; headers: Record<string, string> },
    ) => {
      const op = api.paths[path][method];
      const response = resolve(api, op.responses[String(res.status)] ?? {});
      expect(response.description, `${method} ${path} ${res.status} is documented`).to.be.a(
        'string',
      );
      const declared = Object.keys(response.headers ?? {}).map((n) => n.toLowerCase());
      for (const name of watched.filter((n) => res.headers[n] !== undefined)) {
        expect(declared, `${method} ${path} ${res.status} declares ${name}`).to.include(name);
        seen.add(name);
      }
    };
    const submit = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    check('post', '/normalize_merchant', submit);
    const waited = await h.http
      .post('/normalize_merchant')
      .set('Prefer', 'wait=10')
      .set('Idempotency-Key', 'openapi-headers')
      .send(tx('Spotify'))
      .expect(200);
    check('post', '/normalize_merchant', waited);
    const replayed = await h.http
      .post('/normalize_merchant')
      .set('Idempotency-Key', 'openapi-headers')
      .send(tx('Spotify'))
      .expect(202);
    check('post', '/normalize_merchant', replayed);
    const job = await h.http.get(`/jobs/${waited.body.id}`).expect(200);
    check('get', '/jobs/{id}', job);
    check(
      'get',
      '/jobs/{id}',
      await h.http
        .get(`/jobs/${waited.body.id}`)
        .set('If-None-Match', job.headers.etag ?? '')
        .expect(304),
    );
    check('get', '/jobs', await h.http.get('/jobs?limit=1').expect(200));
    const batch = await h.http
      .post('/normalize_merchant/batch')
      .set('Prefer', 'wait=10')
      .send({ transactions: [tx('A'), tx('B')] })
      .expect(200);
    check('post', '/normalize_merchant/batch', batch);
    await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('C')] })
      .expect(202);
    check('get', '/batches', await h.http.get('/batches?limit=1').expect(200));
    check(
      'get',
      '/batches/{id}/results',
      await h.http.get(`/batches/${batch.body.id}/results?limit=1`).expect(200),
    );
    check('get', '/jobs', await h.anon.get('/jobs').expect(401));
    check('get', '/jobs', await h.http.put('/jobs').expect(405));
    expect([...seen].sort()).to.include.members([
      'allow',
      'content-location',
      'etag',
      'idempotent-replayed',
      'link',
      'location',
      'preference-applied',
      'retry-after',
      'www-authenticate',
      'x-request-id',
    ]);
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
