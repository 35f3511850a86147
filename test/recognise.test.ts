/**
 * The recogniser behind the bundled heuristic, table by table: processor prefixes and the
 * intermediaries they name, reference codes, casing, truncation, and one name per merchant.
 */
import fs from 'node:fs';
import { expect } from 'chai';
import { CATALOGUE } from '../src/heuristic/catalogue.js';
import { type Recognition, recognise } from '../src/heuristic/recognise.js';
import { SLUG_PATTERN, slugOf } from '../src/heuristic/slug.js';
import { isCode } from '../src/heuristic/words.js';

const SAMPLE = new URL('./fixtures/transactions-2k.csv', import.meta.url);

/** [descriptor, merchant name or null, intermediary ids] */
type Row = [string, string | null, string[]];

function check(rows: Row[]) {
  for (const [description, name, via] of rows) {
    it(`${JSON.stringify(description)} -> ${JSON.stringify(name)}${via.length ? ` via ${via.join(', ')}` : ''}`, () => {
      const got = recognise(description);
      expect(got.merchant?.name ?? null, 'merchant').to.equal(name);
      expect(
        got.intermediaries.map((i) => i.id),
        'intermediaries',
      ).to.deep.equal(via);
    });
  }
}

describe('recognise(description)', () => {
  describe('processor prefixes name the intermediaries', () => {
    check([
      ['PAYPAL *SUSHI GO', 'Sushi Go', ['paypal']],
      ['PP*SPOTIFY', 'Spotify', ['paypal']],
      ['SQ *BLUE BOTTLE COFFEE DENVER CO', 'Blue Bottle Coffee', ['square']],
      ['SQU*THAI PALACE', 'Thai Palace', ['square']],
      ['TST* POKE BAR 1234 NEW YORK NY', 'Poke Bar', ['toast']],
      ['SP * VINYL CO', 'Vinyl Co', ['shopify']],
      ['VENMO *SUSHI GO Visa Direct NY', 'Sushi Go', ['venmo']],
      ['GOOGLE *SUSHI GO g.co/helppay', 'Sushi Go', ['google']],
      ['DD *DOORDASH POKE BAR', 'Poke Bar', ['doordash']],
      ['DOORDASH*PIZZA HUT 888-277-6728 CA', 'Pizza Hut', ['doordash']],
      ['GRUBHUB*TACO BELL', 'Taco Bell', ['grubhub']],
      ['IC* COSTCO', 'Costco', ['instacart']],
      // Nested: paid through PayPal to DoorDash, which delivered for Poke Bar.
      ['PAYPAL *DOORDASH*POKE BAR', 'Poke Bar', ['paypal', 'doordash']],
      // The platform itself is the merchant: not also listed as an intermediary.
      ['GOOGLE *Google Storage', 'Google', []],
      ['PAYPAL *TRANSFER', 'PayPal', []],
      // "Payment" names no one.
      ['Payment Netflix APRIL***', 'Netflix', []],
      ['NETFLIX.COM LOS GATOS CA', 'Netflix', []],
      // Paid through Square, to someone the descriptor does not name.
      ['SQ *12345', null, ['square']],
      ['XQZW 99812 UNKNOWN', null, []],
    ]);
  });

  describe('reference codes are never merchant names', () => {
    check([
      ['GRUBHUB*JDACTF 834-678-7722', 'Grubhub', []],
      ['GRUBHUB*4YTYBW9P 837-512-4671', 'Grubhub', []],
      ['DOORDASH*MDWARD', 'DoorDash', []],
      ['PAYPAL *XKQRTZ', 'PayPal', []],
      ['VENMO *QXBVKA 415-000-0000', 'Venmo', []],
      ['SQ *#4521 THAI PALACE', 'Thai Palace', ['square']],
      ['PAYPAL *POKE BAR 836-722-6890 CA', 'Poke Bar', ['paypal']],
      ['AMZN Mktp US*M89E8FS8H5', 'Amazon', []],
      // Words with few vowels are still words.
      ['PAYPAL *SCHWAB', 'Schwab', ['paypal']],
      ['GRUBHUB*BOOK NOOK', 'Book Nook', ['grubhub']],
      ['SQ *STRENGTH LAB', 'Strength Lab', ['square']],
    ]);

    const codes = ['JDACTF', 'MDWARD', 'XKQRTZ', '4YTYBW9P', 'G.CO/HELPPAY', '#4521', 'APRIL***'];
    const words = ['SUSHI', 'SCHWAB', 'T-MOBILE', "MCDONALD'S", 'XFINITY', 'CHEVRON', 'CO', 'BBQ'];
    it(`tells codes (${codes.join(' ')}) from words (${words.join(' ')})`, () => {
      expect(
        codes.filter((c) => !isCode(c)),
        'codes taken for words',
      ).to.deep.equal([]);
      expect(words.filter(isCode), 'words taken for codes').to.deep.equal([]);
    });
  });

  describe('names keep their own casing', () => {
    check([
      ['GOOGLE *YOUTUBE TV', 'YouTube TV', ['google']],
      ['YOUTUBE TV 855-123-4567 CA', 'YouTube TV', []],
      ['GOOGLE *YOUTUBE MUSIC', 'YouTube Music', ['google']],
      ['SQ *BBQ SHACK', 'BBQ Shack', ['square']],
      ['PAYPAL *MCGREGORS PUB', 'McGregors Pub', ['paypal']],
      ["SQ *JOE'S DINER", "Joe's Diner", ['square']],
      ['TST* COCA-COLA STORE', 'Coca-Cola Store', ['toast']],
      ['PAYPAL *EBAY SELLER', 'eBay', ['paypal']],
      ['SQ *GITHUB UNIVERSE', 'GitHub', ['square']],
    ]);
  });

  describe('names cut short by the statement', () => {
    check([
      ['PLANET FITNE BOSTON MA', 'Planet Fitness', []],
      ['YOUTUBE PREMI', 'YouTube Premium', []],
      ['PAYPAL *NETFLI', 'Netflix', ['paypal']],
      ['CHICK-FIL- #02134', 'Chick-fil-A', []],
      ['DISNEY PL 822-752-3344 CA', 'Disney+', []],
      ['SQ *BLUE BOTTLE COFF', 'Blue Bottle Coffee', ['square']],
      // A complete word is not a cut: "PLANET" alone could be any planet.
      ['PLANET SMOOTHIE', null, []],
      // Too short to be sure.
      ['NETF', null, []],
    ]);
  });

  describe('one merchant, one name', () => {
    const groups: Array<[string, string[]]> = [
      [
        'Vinyl Co',
        [
          'GRUBHUB*VINYL CO',
          'PAYPAL *VINYL CO',
          'PAYPAL *VINYL CO 813-993-1809 CA',
          'GOOGLE *VINYL CO g.co/helppay',
          'DOORDASH*VINYL CO 809-213-7286 CA',
          'VENMO *VINYL CO Visa Direct NY',
        ],
      ],
      [
        'Sushi Go',
        [
          'PAYPAL *SUSHI GO',
          'GOOGLE *SUSHI GO g.co/helppay',
          'VENMO *SUSHI GO Visa Direct NY',
          'SQ *SUSHI GO 4521 SEATTLE WA',
          'GRUBHUB*SUSHI GO NY',
        ],
      ],
    ];
    for (const [name, descriptors] of groups) {
      it(`gives ${JSON.stringify(name)} to ${descriptors.length} spellings`, () => {
        const answers = descriptors.map((d) => recognise(d).merchant);
        expect(answers).to.deep.equal(descriptors.map(() => ({ name, id: slugOf(name) })));
      });
    }

    it('gives each id one name and each name one id over transactions-2k.csv', () => {
      const rows = fs.readFileSync(SAMPLE, 'utf8').trim().split(/\r?\n/).slice(1);
      expect(rows).to.have.length(2000);
      const nameOf = new Map<string, string>();
      const idOf = new Map<string, string>();
      const answers: Recognition[] = rows.map((row) =>
        recognise(row.slice(11, row.lastIndexOf(',')).replace(/^"|"$/g, '')),
      );
      for (const { merchant } of answers) {
        expect(merchant, 'every row has a merchant').not.to.equal(null);
        if (!merchant) continue;
        expect(nameOf.get(merchant.id) ?? merchant.name, merchant.id).to.equal(merchant.name);
        expect(idOf.get(merchant.name) ?? merchant.id, merchant.name).to.equal(merchant.id);
        nameOf.set(merchant.id, merchant.name);
        idOf.set(merchant.name, merchant.id);
      }
      expect(nameOf.size).to.be.above(80);
    });
  });

  describe('merchant ids', () => {
    it('are unique slugs across the catalogue, with hand-picked ones where the slug reads badly', () => {
      const ids = CATALOGUE.map((e) => e.id ?? slugOf(e.name));
      for (const id of ids) expect(id).to.match(SLUG_PATTERN);
      expect(new Set(ids).size).to.equal(CATALOGUE.length);
      expect(new Set(CATALOGUE.map((e) => e.name)).size).to.equal(CATALOGUE.length);
      expect(recognise('ATT*BILL PAYMENT 830-297-7509 TX').merchant).to.deep.equal({
        name: 'AT&T',
        id: 'att',
      });
      expect(recognise('DISNEYPLUS 4BS6PP1V12').merchant?.id).to.equal('disney-plus');
      expect(recognise("MCDONALD'S F7299 AUSTIN TX").merchant?.id).to.equal('mcdonalds');
    });

    it('slugOf folds accents, apostrophes, & and +', () => {
      expect(slugOf('Café Olé')).to.equal('cafe-ole');
      expect(slugOf("Trader Joe's")).to.equal('trader-joes');
      expect(slugOf('Barnes & Noble')).to.equal('barnes-and-noble');
      expect(slugOf('Disney+')).to.equal('disney-plus');
      expect(slugOf('  --  ')).to.equal(null);
    });
  });
});
