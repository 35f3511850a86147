/**
 * Word-level rules of the recogniser: which descriptor tokens are codes rather than words, and
 * how a name printed in capitals is written back in its own casing.
 */
import { CATALOGUE } from './catalogue.js';

// prettier-ignore
export const US_STATES = new Set([
  'AL', 'AK', 'AZ', 'AR', 'CA', 'CO', 'CT', 'DE', 'DC', 'FL', 'GA', 'HI', 'ID', 'IL', 'IN', 'IA',
  'KS', 'KY', 'LA', 'ME', 'MD', 'MA', 'MI', 'MN', 'MS', 'MO', 'MT', 'NE', 'NV', 'NH', 'NJ', 'NM',
  'NY', 'NC', 'ND', 'OH', 'OK', 'OR', 'PA', 'RI', 'SC', 'SD', 'TN', 'TX', 'UT', 'VT', 'VA', 'WA',
  'WV', 'WI', 'WY',
]);

const VOWELS = /[AEIOUY]/;
// Two consonants that start English words and brand names ("MCDONALD", "XFINITY"); no other
// pair does ("JDACTF").
// prettier-ignore
const ONSETS = new Set([
  'BL', 'BR', 'CH', 'CL', 'CR', 'CZ', 'DR', 'DW', 'FL', 'FR', 'GH', 'GL', 'GN', 'GR', 'KH', 'KL',
  'KN', 'KR', 'MC', 'PF', 'PH', 'PL', 'PR', 'PS', 'RH', 'SC', 'SH', 'SK', 'SL', 'SM', 'SN', 'SP',
  'SQ', 'ST', 'SW', 'TH', 'TR', 'TS', 'TW', 'WH', 'WR', 'XB', 'XF', 'XP', 'XT', 'ZH',
]);

/**
 * True for a token that is a reference, store number, phone number or web address rather
 * than a word of a name: it holds a digit or one of `. / # * _`, or it is letters no word is
 * spelt with: no vowel at all (5+ letters), a start no English word or brand has ("JDACTF"),
 * six consonants in a row, a J before a consonant or a Q without U. Each part of a hyphenated
 * or possessive token is judged alone ("T-MOBILE"); parts up to 3 letters ("CO", "BBQ") never
 * count as codes.
 */
export function isCode(token: string): boolean {
  if (/[\d./#*_]/.test(token)) return true;
  return token.split(/['&-]/).some(lettersAreCode);
}

function lettersAreCode(part: string): boolean {
  if (part.length < 4 || /[^A-Z]/.test(part)) return false;
  if (!VOWELS.test(part)) return part.length >= 5;
  const [a = '', b = ''] = part;
  if (!VOWELS.test(a) && !VOWELS.test(b) && !ONSETS.has(a + b)) return true;
  return /[^AEIOUY]{6}|J[^AEIOUY]|Q[^U]|Q$/.test(part);
}

/** Words whose casing is not title case: from the catalogue's names, and a few common ones. */
const CASING = new Map<string, string>();
for (const word of ['TV', 'BBQ', 'USA', 'NYC', 'LLC', 'DJ', 'PC', 'DMV', 'ATM']) {
  CASING.set(word, word);
}
for (const entry of CATALOGUE) {
  for (const word of entry.name.split(' ')) {
    if (word !== titleWord(word.toUpperCase())) CASING.set(word.toUpperCase(), word);
  }
}

/** One upper-case word as it is written: "PAYPAL" -> "PayPal", "TV" -> "TV", "JOE'S" -> "Joe's". */
export function caseWord(word: string): string {
  return CASING.get(word) ?? titleWord(word);
}

/** "SUSHI" -> "Sushi", "COCA-COLA" -> "Coca-Cola", "MCGREGOR'S" -> "McGregor's". */
function titleWord(word: string): string {
  const titled = word
    .toLowerCase()
    .replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase());
  return /^Mc[a-z]{2}/.test(titled)
    ? `Mc${titled.charAt(2).toUpperCase()}${titled.slice(3)}`
    : titled;
}
