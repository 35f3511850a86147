import { CATALOGUE, type CatalogueEntry, GENERIC_WORDS, PROCESSORS } from './catalogue.js';
import { slugOf } from './slug.js';
import type { Intermediary } from './types.js';
import { US_STATES, caseWord, isCode } from './words.js';

/** What the recogniser makes of a descriptor: the mock heuristic's answer. */
export interface Recognition {
  merchant: { name: string; id: string } | null;
  /** Processors and platforms the descriptor names, outermost first, minus the merchant. */
  intermediaries: Intermediary[];
}

/** Upper-cases, folds compatibility characters and collapses whitespace. */
export function normaliseDescriptor(description: string): string {
  return description.normalize('NFKC').toUpperCase().replace(/\s+/g, ' ').trim();
}

/**
 * The merchant a card descriptor refers to and the processors in front of it. Processor
 * prefixes are looked through ("PAYPAL *SPOTIFY" is Spotify, through PayPal); an unknown name
 * behind one ("SQ *THAI PALACE") is cleaned of codes, places and generic words and written in
 * its own casing; a catalogue name cut short ("PLANET FITNE") is still recognised.
 */
export function recognise(description: string): Recognition {
  const text = normaliseDescriptor(description);
  const { rest, intermediaries, prefixed, fallback } = stripProcessors(text);
  const name = lookup(rest)?.name ?? (prefixed ? (displayName(rest) ?? fallback) : null);
  const id = name === null ? null : idOf(name);
  const merchant = name === null || id === null ? null : { name, id };
  return { merchant, intermediaries: intermediaries.filter((i) => i.id !== merchant?.id) };
}

/** The merchant's name alone, or null. */
export function recogniseMerchant(description: string): string | null {
  return recognise(description).merchant?.name ?? null;
}

/**
 * What the recogniser's answer depends on, and nothing else: the intermediaries and the
 * merchant's name (its id follows from the name). Store numbers, phone numbers, reference
 * codes, case and spacing fall away, so one merchant's varying descriptors share a signature;
 * two descriptors with one signature always get one answer, and two answers never share one.
 */
export function merchantSignature(description: string): string {
  const { merchant, intermediaries } = recognise(description);
  return `${intermediaries.map((i) => i.id).join('+')}>${merchant?.name ?? ''}`;
}

function stripProcessors(text: string) {
  const intermediaries: Intermediary[] = [];
  let rest = text;
  let prefixed = false;
  let fallback: string | null = null;
  // Prefixes nest ("PAYPAL *DOORDASH*POKE BAR"); three levels are plenty.
  for (let depth = 0; depth < 3; depth++) {
    const processor = PROCESSORS.find((p) => p.prefix.test(rest));
    if (!processor) break;
    rest = rest.replace(processor.prefix, '');
    prefixed = true;
    fallback = processor.fallback ?? fallback;
    const { intermediary } = processor;
    if (intermediary && !intermediaries.some((i) => i.id === intermediary.id)) {
      intermediaries.push(intermediary);
    }
  }
  return { rest, intermediaries, prefixed, fallback };
}

const BY_NAME = new Map(CATALOGUE.map((e) => [e.name, e]));

/** A catalogue merchant's id, or the slug of a name found in the descriptor. */
function idOf(name: string): string | null {
  const entry = BY_NAME.get(name);
  return entry ? (entry.id ?? slugOf(entry.name)) : slugOf(name);
}

function lookup(text: string): CatalogueEntry | null {
  return CATALOGUE.find((e) => e.patterns.some((p) => p.test(text))) ?? lookupCutShort(text);
}

/** Every catalogue entry's full printed spellings, for recognising one cut short. */
const PRINTED: ReadonlyArray<readonly [string, CatalogueEntry]> = CATALOGUE.flatMap((entry) =>
  (entry.printed ?? [normaliseDescriptor(entry.name).replace(/'/g, '')]).map(
    (printed) => [printed, entry] as const,
  ),
);

/**
 * A catalogue name the statement cut off mid-word, as card networks truncate the merchant
 * field ("PLANET FITNE BOSTON MA", "YOUTUBE PREMI"): the leading words, the last one
 * incomplete, spell the start of exactly one merchant's name. At least five characters, so a
 * short word is not taken for a brand.
 */
function lookupCutShort(text: string): CatalogueEntry | null {
  const tokens = text.split(' ');
  for (let k = 1; k <= tokens.length; k++) {
    const head = tokens.slice(0, k).join(' ');
    const candidates = PRINTED.filter(([printed]) => printed.startsWith(head));
    if (candidates.length === 0) return null;
    if (head.length < 5) continue;
    const cut = new Set(
      candidates.filter(([printed]) => /^[^ ]/.test(printed.slice(head.length))).map(([, e]) => e),
    );
    const [only] = cut;
    if (cut.size === 1 && only) return only;
  }
  return null;
}

/**
 * The name a processor prefix is followed by, written in its own casing: leading codes are
 * skipped, and the name ends at the first code after it ("SUSHI GO 834-678-7722 CA" -> "Sushi
 * Go"; "JDACTF 834-678-7722" -> null). Generic words go; a trailing state code goes, except
 * "CO", which after a name is the company ("VINYL CO" -> "Vinyl Co"), whatever follows it.
 * null when no word of two letters is left.
 */
function displayName(text: string): string | null {
  const words: string[] = [];
  for (const token of text.split(' ')) {
    const word = token === '&' ? token : token.replace(/^[^A-Z]+|[^A-Z]+$/g, '');
    if (isCode(token) || word === '') {
      if (words.length > 0) break;
      continue;
    }
    if (!GENERIC_WORDS.has(word)) words.push(word);
  }
  while (words.length > 0 && words[words.length - 1] === '&') words.pop();
  const last = words[words.length - 1] ?? '';
  if (words.length > 1 && last !== 'CO' && US_STATES.has(last)) words.pop();
  if (!words.some((w) => /[A-Z]{2}/.test(w))) return null;
  return words.map(caseWord).join(' ');
}
