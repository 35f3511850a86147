import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { sha256 } from '../src/sha256.js';

describe('sha256', () => {
  it('is the SHA-256 of the UTF-8 text, hex or base64url, as a Hash object gives it', () => {
    for (const text of ['', 'mn_0123456789ab_key', '{"description":"Café Zürich 🍕 東京"}']) {
      for (const encoding of ['hex', 'base64url'] as const) {
        expect(sha256(text, encoding)).to.equal(
          createHash('sha256').update(text, 'utf8').digest(encoding),
        );
      }
    }
  });
});
