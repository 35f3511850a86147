import { expect } from 'chai';
import type { Response } from 'supertest';

/** Asserts an RFC 9457 problem+json answer of the given `type` and `status`. */
export function expectProblem(res: Response, type: string, status: number): void {
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
  expect(res.body).to.include({ type, status });
}

/** Asserts that `promise` rejects with an error whose message matches `message`. */
export async function expectRejection(promise: Promise<unknown>, message: RegExp): Promise<void> {
  let error: unknown;
  try {
    await promise;
  } catch (err) {
    error = err;
  }
  expect(error, 'the promise to reject').to.be.instanceOf(Error);
  expect((error as Error).message).to.match(message);
}
