import { Writable } from 'node:stream';
import { expect } from 'chai';
import Koa from 'koa';
import { pino } from 'pino';
import supertest from 'supertest';
import type { Authenticator } from '../src/auth/authenticator.js';
import { type State, authenticate, requestContext } from '../src/http/middleware.js';

/** A pino logger whose lines land in `lines`, counting the child loggers made of it. */
function capturingLogger(level: 'info' | 'warn') {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const log = pino({ level, base: undefined, timestamp: false }, stream);
  const made = { children: 0 };
  const child = log.child.bind(log);
  log.child = ((...args: Parameters<typeof child>) => {
    made.children += 1;
    return child(...args);
  }) as typeof log.child;
  return {
    log,
    lines,
    made,
    parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const principal = { id: '00000000-0000-4000-8000-000000000001', name: 'acme', keyId: 'k1' };
const auth = { authenticate: () => Promise.resolve(principal) } as unknown as Authenticator;

/** An app like the service's: request context, then authentication, then `handler`. */
function appWith(log: pino.Logger, handler: Koa.Middleware) {
  const app = new Koa();
  app.silent = true;
  app.use(requestContext(log));
  app.use(authenticate(auth));
  app.use(handler);
  return supertest(app.callback());
}

describe('request logging', () => {
  it('writes the request line with the request id and the client, as a child logger would', async () => {
    const { log, lines, parsed } = capturingLogger('info');
    await appWith(log, (ctx) => {
      ctx.status = 202;
      ctx.body = { ok: true };
    })
      .post('/normalize_merchant')
      .set('X-Request-Id', 'req-1')
      .expect(202);
    const [line] = parsed().filter((l) => l.msg === 'request');
    expect(line).to.include({
      requestId: 'req-1',
      client: 'acme',
      method: 'POST',
      status: 202,
      path: '/normalize_merchant',
    });
    // The same fields in the same order as a child with these bindings writes them.
    const viaChild: string[] = [];
    const child = pino(
      { level: 'info', base: undefined, timestamp: false },
      new Writable({
        write(chunk: Buffer, _e, done) {
          viaChild.push(chunk.toString().trim());
          done();
        },
      }),
    )
      .child({ requestId: 'req-1' })
      .child({ client: 'acme' });
    const { requestId: _r, client: _c, level: _l, msg: _m, ...rest } = line ?? {};
    child.info(rest, 'request');
    expect(lines.find((l) => l.includes('"msg":"request"'))).to.equal(viaChild[0]);
  });

  it("binds the request id and the client to what the request's handlers log", async () => {
    const { log, parsed } = capturingLogger('info');
    await appWith(log, (ctx) => {
      (ctx.state as State).log.warn({ step: 1 }, 'from the handler');
      throw new Error('boom');
    })
      .get('/jobs')
      .set('X-Request-Id', 'req-2')
      .expect(500);
    const lines = parsed();
    expect(lines.find((l) => l.msg === 'from the handler')).to.include({
      requestId: 'req-2',
      client: 'acme',
      step: 1,
    });
    expect(lines.find((l) => l.msg === 'unhandled error')).to.include({
      requestId: 'req-2',
      client: 'acme',
    });
    expect(lines.find((l) => l.msg === 'request')).to.include({
      requestId: 'req-2',
      client: 'acme',
      status: 500,
    });
  });

  it('binds the client to a logger first read before authentication once it is known', async () => {
    const { log, parsed } = capturingLogger('info');
    const app = new Koa();
    app.silent = true;
    app.use(requestContext(log));
    app.use(async (ctx, next) => {
      (ctx.state as State).log.info('before');
      await next();
    });
    app.use(authenticate(auth));
    app.use((ctx) => {
      (ctx.state as State).log.info('after');
      ctx.status = 204;
    });
    await supertest(app.callback()).get('/').set('X-Request-Id', 'req-3').expect(204);
    const lines = parsed();
    const before = lines.find((l) => l.msg === 'before');
    expect(before).to.include({ requestId: 'req-3' });
    expect(before).not.to.have.property('client');
    expect(lines.find((l) => l.msg === 'after')).to.include({ requestId: 'req-3', client: 'acme' });
  });

  it('makes no child logger for a request that logs nothing (level above info)', async () => {
    const { log, lines, made } = capturingLogger('warn');
    const http = appWith(log, (ctx) => {
      ctx.status = 202;
      ctx.body = {};
    });
    for (let i = 0; i < 3; i++) await http.post('/normalize_merchant').expect(202);
    expect(lines).to.deep.equal([]);
    expect(made.children).to.equal(0);
  });
});
