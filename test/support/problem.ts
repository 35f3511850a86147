import { expect } from 'chai';
import type { Response } from 'supertest';

/** Asserts an RFC 9457 problem+json answer of the given `type` and `status`. */
export function expectProblem(res: Response, type: string, status: number): void {
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
  expect(res.body).to.include({ type, status });
}
