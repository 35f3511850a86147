/**
 * SHA-256 of a string as text, in one call: `crypto.hash` (Node 20.12+) does not make a Hash
 * object per call, which showed in the per-request profile (an ETag and an API key are hashed
 * on every call). Older Node versions get the Hash object.
 */
import crypto from 'node:crypto';

type Encoding = 'hex' | 'base64url';

const oneShot = (
  crypto as { hash?: (algorithm: string, data: string, encoding: Encoding) => string }
).hash;

export const sha256: (data: string, encoding: Encoding) => string = oneShot
  ? (data, encoding) => oneShot('sha256', data, encoding)
  : (data, encoding) => crypto.createHash('sha256').update(data, 'utf8').digest(encoding);
