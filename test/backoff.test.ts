/**
 * The retry delay per attempt, with the randomness pinned at both ends of [0, 1): "equal
 * jitter" means half the nominal delay fixed and half random, the nominal doubling from the base
 * per attempt up to the cap.
 */
import { expect } from 'chai';
import { retryDelayMs } from '../src/runner/backoff.js';

/** The largest double below 1: what Math.random() can return at most. */
const ALMOST_ONE = 1 - 2 ** -53;

describe('retryDelayMs', () => {
  const opts = { baseMs: 1000, maxMs: 30_000 };

  it('is half the nominal delay when the randomness is 0, for attempts 1..8', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => retryDelayMs(attempt, opts, () => 0));
    // Nominal: 1 s, 2 s, 4 s, 8 s, 16 s, then capped at 30 s.
    expect(delays).to.deep.equal([500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000]);
  });

  it('is the whole nominal delay when the randomness is just under 1, for attempts 1..8', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8].map((attempt) =>
      retryDelayMs(attempt, opts, () => ALMOST_ONE),
    );
    expect(delays).to.deep.equal([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });

  it('lies between the two, linearly, for randomness in between', () => {
    expect(retryDelayMs(3, opts, () => 0.5)).to.equal(3000);
    expect(retryDelayMs(3, opts, () => 0.25)).to.equal(2500);
    expect(retryDelayMs(6, opts, () => 0.5)).to.equal(22_500);
  });

  it('treats an attempt below 1 as the first, and never exceeds the cap however many attempts', () => {
    expect(retryDelayMs(0, opts, () => 0)).to.equal(500);
    expect(retryDelayMs(1000, opts, () => ALMOST_ONE)).to.equal(30_000);
    expect(retryDelayMs(1000, opts, () => 0)).to.equal(15_000);
  });

  it('uses Math.random by default: always within [nominal / 2, nominal]', () => {
    for (let i = 0; i < 200; i++) {
      expect(retryDelayMs(2, opts)).to.be.within(1000, 2000);
    }
  });
});
