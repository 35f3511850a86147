import fs from 'node:fs';
import { expect } from 'chai';
import { CATALOGUE } from '../src/heuristic/catalogue.js';
import { createMockHeuristic, InjectedFailure } from '../src/heuristic/mock.js';
import { recognise, recogniseMerchant } from '../src/heuristic/recognise.js';
import { tx } from './support/heuristics.js';

const SAMPLE = new URL('./fixtures/transactions-2k.csv', import.meta.url);

describe('recogniseMerchant(description)', () => {
  const examples: Array<[string, string | null]> = [
    ['Payment Netflix APRIL***', 'Netflix'],
    ['NETFLIX.COM LOS GATOS CA', 'Netflix'],
    ['SQ *BLUE BOTTLE COFFEE DENVER CO', 'Blue Bottle Coffee'],
    ['PAYPAL *SPOTIFY 853-536-8723 CA', 'Spotify'],
    ['PAYPAL *TRANSFER', 'PayPal'],
    ['AMZN Mktp US*M89E8FS8H5', 'Amazon'],
    ['AMAZON.COM*YASCCW AMZN.COM/BILL WA', 'Amazon'],
    ['COSTCO WHSE #7740 SAN FRANCISCO CA', 'Costco'],
    ["MCDONALD'S F7299 AUSTIN TX", "McDonald's"],
    ['MCD PHOENIX AZ', "McDonald's"],
    ['GRUBHUB*PIZZA HUT', 'Pizza Hut'],
    ['GRUBHUB*4YTYBW9P 837-512-4671', 'Grubhub'],
    ['DD *DOORDASH POKE BAR', 'Poke Bar'],
    ['VENMO *SUSHI GO Visa Direct NY', 'Sushi Go'],
    ['GOOGLE *VINYL CO g.co/helppay', 'Vinyl Co'],
    ['GOOGLE *YouTubePremium g.co/helppay#', 'YouTube Premium'],
    ['UBER* EATS PENDING', 'Uber Eats'],
    ['UBER *TRIP HELP.UBER.COM CA', 'Uber'],
    ['  payment   netflix   may***  ', 'Netflix'],
    ['XQZW 99812 UNKNOWN', null],
    ['SQ *12345', null],
  ];
  for (const [description, expected] of examples) {
    it(`maps ${JSON.stringify(description)} to ${JSON.stringify(expected)}`, () => {
      expect(recogniseMerchant(description)).to.equal(expected);
    });
  }

  it('knows at least 60 merchants', () => {
    expect(new Set(CATALOGUE.map((e) => e.name)).size).to.be.at.least(60);
  });

  it('recognises a merchant in every row of the 2,000-transaction sample', () => {
    const rows = fs.readFileSync(SAMPLE, 'utf8').trim().split(/\r?\n/).slice(1);
    expect(rows).to.have.length(2000);
    const missed = rows
      .map((row) => /^[^,]*,("(?:[^"]|"")*"|[^,]*),/.exec(row)?.[1]?.replace(/^"|"$/g, '') ?? '')
      .filter((description) => recogniseMerchant(description) === null);
    expect(missed).to.deep.equal([]);
  });
});

describe('createMockHeuristic()', () => {
  it('answers {merchant: {name, id}, intermediaries} after a delay drawn from HEURISTIC_DELAY_MS', async () => {
    const heuristic = createMockHeuristic({ delayMs: { min: 60, max: 60 }, failureRate: 0 });
    const started = performance.now();
    const answer = await heuristic.match(tx('PAYPAL *NETFLIX'), new AbortController().signal);
    expect(answer).to.deep.equal({
      merchant: { name: 'Netflix', id: 'netflix' },
      intermediaries: [{ id: 'paypal', name: 'PayPal', kind: 'processor' }],
    });
    expect(performance.now() - started).to.be.at.least(55);
  });

  it('answers merchant: null when no merchant is recognised', async () => {
    const heuristic = createMockHeuristic({ delayMs: { min: 0, max: 0 }, failureRate: 0 });
    expect(await heuristic.match(tx('XQZW 99812'), new AbortController().signal)).to.deep.equal({
      merchant: null,
      intermediaries: [],
    });
  });

  it('stops waiting as soon as its signal aborts', async () => {
    const heuristic = createMockHeuristic({
      delayMs: { min: 30_000, max: 30_000 },
      failureRate: 0,
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('stop')), 20);
    const started = performance.now();
    const outcome = await heuristic.match(tx('Netflix'), controller.signal).then(
      () => 'resolved',
      (err: Error) => err.name,
    );
    expect(outcome).to.equal('AbortError');
    expect(performance.now() - started).to.be.below(5000);
  });

  it('throws InjectedFailure at HEURISTIC_FAILURE_RATE', async () => {
    const always = createMockHeuristic({ delayMs: { min: 0, max: 0 }, failureRate: 1 });
    const err = await always.match(tx('Netflix'), new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(InjectedFailure);
  });

  describe('key(tx)', () => {
    const heuristic = createMockHeuristic({ delayMs: { min: 0, max: 0 }, failureRate: 0 });
    const key = (description: string) => heuristic.key(tx(description));

    it('folds away store numbers, phone numbers, reference codes, case and spacing', () => {
      const variants = [
        ['COSTCO WHSE #7740 SAN FRANCISCO CA', 'costco  whse #0012 Seattle WA'],
        ['PAYPAL *SPOTIFY 853-536-8723 CA', 'PayPal *Spotify 800-555-0101'],
        ['AMZN Mktp US*M89E8FS8H5', 'AMAZON.COM*YASCCW AMZN.COM/BILL WA'],
        ['Payment Netflix APRIL***', 'NETFLIX.COM LOS GATOS CA'],
        ['GRUBHUB*4YTYBW9P 837-512-4671', 'GRUBHUB*77QX2ZP1 415-000-0000'],
        ['SQ *BLUE BOTTLE COFFEE DENVER CO', 'SQ* Blue  Bottle Coffee 1234 OAKLAND CA'],
      ];
      for (const [a, b] of variants) expect(key(a ?? ''), `${a} ~ ${b}`).to.equal(key(b ?? ''));
      expect(key('NETFLIX.COM')).not.to.equal(key('SPOTIFY USA'));
      expect(heuristic.version).to.be.a('string').and.not.be.empty;
    });

    it('gives one key per answer on transactions-2k.csv: equal keys never mean different answers', () => {
      const rows = fs.readFileSync(SAMPLE, 'utf8').trim().split('\n').slice(1);
      const descriptions = rows.map((r) => r.slice(11, r.lastIndexOf(',')).replace(/^"|"$/g, ''));
      const answerOf = new Map<string, string>();
      const answer = (d: string) => JSON.stringify(recognise(d));
      for (const d of descriptions) {
        const k = key(d) ?? '';
        if (answerOf.has(k)) expect(answerOf.get(k), `${d} (key ${k})`).to.equal(answer(d));
        answerOf.set(k, answer(d));
      }
      const distinctAnswers = new Set(descriptions.map(answer)).size;
      expect(answerOf.size, 'distinct keys').to.equal(distinctAnswers);
      expect(answerOf.size).to.be.below(descriptions.length / 5);
    });
  });
});
