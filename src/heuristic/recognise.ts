import { CATALOGUE, GENERIC_WORDS, PROCESSORS } from './catalogue.js';

/** Upper-cases, folds compatibility characters and collapses whitespace. */
export function normaliseDescriptor(description: string): string {
  return description.normalize('NFKC').toUpperCase().replace(/\s+/g, ' ').trim();
}

/**
 * The merchant name a card descriptor refers to, or null. Processor prefixes are looked
 * through first, so "PAYPAL *SPOTIFY" is Spotify rather than PayPal; an unknown name behind a
 * processor ("SQ *THAI PALACE") is cleaned up and title-cased.
 */
export function recogniseMerchant(description: string): string | null {
  return analyse(description).name;
}

/**
 * What the recogniser's answer depends on, and nothing else: the catalogue entry that matched,
 * or the name words left behind a processor prefix, or the processor's fallback. Store numbers,
 * phone numbers, reference codes, case and spacing fall away, so one merchant's varying
 * descriptors share a signature; two descriptors with one signature always get one answer.
 */
export function merchantSignature(description: string): string {
  return analyse(description).signature;
}

function analyse(description: string): { name: string | null; signature: string } {
  const text = normaliseDescriptor(description);
  for (const processor of PROCESSORS) {
    const prefix = processor.prefix.exec(text);
    if (!prefix) continue;
    const rest = text.slice(prefix[0].length);
    const found = lookup(rest);
    if (found) return { name: found, signature: `entry:${found}` };
    const display = displayName(rest);
    if (display) return { name: display, signature: `name:${display}` };
    return { name: processor.fallback, signature: `fallback:${processor.fallback ?? ''}` };
  }
  const found = lookup(text);
  return { name: found, signature: found ? `entry:${found}` : 'none' };
}

function lookup(text: string): string | null {
  const entry = CATALOGUE.find((e) => e.patterns.some((p) => p.test(text)));
  return entry?.name ?? null;
}

// prettier-ignore
const US_STATES = new Set([
  'AL', 'AK', 'AZ', 'AR', 'CA', 'CO', 'CT', 'DE', 'DC', 'FL', 'GA', 'HI', 'ID', 'IL', 'IN', 'IA',
  'KS', 'KY', 'LA', 'ME', 'MD', 'MA', 'MI', 'MN', 'MS', 'MO', 'MT', 'NE', 'NV', 'NH', 'NJ', 'NM',
  'NY', 'NC', 'ND', 'OH', 'OK', 'OR', 'PA', 'RI', 'SC', 'SD', 'TN', 'TX', 'UT', 'VT', 'VA', 'WA',
  'WV', 'WI', 'WY',
]);

/** "SUSHI GO VISA DIRECT NY" -> "Sushi Go"; null when only codes and generic words remain. */
function displayName(text: string): string | null {
  const tokens = text.split(' ');
  // A trailing state code is where the statement says the merchant is, not part of its name.
  if (tokens.length > 1 && US_STATES.has(tokens[tokens.length - 1] ?? '')) tokens.pop();
  const words = tokens
    .filter((w) => !/[\d./#]/.test(w) && !GENERIC_WORDS.has(w))
    .map((w) => w.replace(/^[^A-Z]+|[^A-Z]+$/g, ''))
    .filter((w) => w.length > 0);
  if (!words.some((w) => /[A-Z]{2}/.test(w))) return null;
  return words.map((w) => w.charAt(0) + w.slice(1).toLowerCase()).join(' ');
}
