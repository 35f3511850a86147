/**
 * Merchants the mock heuristic recognises, with the descriptor shapes card statements really
 * print for them. Patterns run against the upper-cased, space-collapsed descriptor after any
 * payment-processor prefix has been removed (see processors below), and are anchored at the
 * start: statements lead with the merchant, then store numbers, places and references.
 */
import type { Intermediary } from './types.js';

export interface CatalogueEntry {
  name: string;
  patterns: RegExp[];
  /** Stable id when the slug of `name` would read badly ("AT&T" -> "att"). @defaultValue slugOf(name) */
  id?: string;
  /**
   * How statements spell the name in full, for recognising it cut short ("PLANET FITNE").
   * @defaultValue the name upper-cased, apostrophes dropped
   */
  printed?: string[];
}

export const CATALOGUE: readonly CatalogueEntry[] = [
  // Subscriptions and digital services
  { name: 'Netflix', patterns: [/^NETFLIX\b/] },
  { name: 'Hulu', patterns: [/^HULU\b/] },
  { name: 'Disney+', patterns: [/^DISNEY ?PLUS\b/], printed: ['DISNEY PLUS'] },
  { name: 'HBO Max', patterns: [/^HBO ?MAX\b/, /^WARNER MEDIA\*HBOMAX\b/] },
  { name: 'YouTube Premium', patterns: [/^YOUTUBE ?PREMIUM\b/] },
  { name: 'YouTube TV', patterns: [/^YOUTUBE ?TV\b/] },
  { name: 'Spotify', patterns: [/^SPOTIFY\b/] },
  { name: 'Apple', patterns: [/^APL\*/, /^APPLE\b/, /^ITUNES\.COM\b/] },
  { name: 'Google', patterns: [/^GOOGLE (STORAGE|ONE|CLOUD|PLAY)\b/] },
  { name: 'Microsoft', patterns: [/^MICROSOFT\b/, /^MSFT\b/] },
  { name: 'Adobe', patterns: [/^ADOBE\b/] },
  { name: 'Dropbox', patterns: [/^DROPBOX\b/] },
  { name: 'Zoom', patterns: [/^ZOOM\.US\b/, /^ZOOM VIDEO\b/] },
  { name: 'GitHub', patterns: [/^GITHUB\b/] },
  { name: 'OpenAI', patterns: [/^OPENAI\b/] },
  { name: 'Patreon', patterns: [/^PATREON\b/] },
  { name: 'Audible', patterns: [/^AUDIBLE\b/] },
  { name: 'Kindle', patterns: [/^KINDLE (SVCS|UNLTD)\b/] },
  { name: 'PlayStation', patterns: [/^SONY PLAYSTATION\b/, /^PLAYSTATION NETWORK\b/] },
  { name: 'Steam', patterns: [/^STEAMGAMES\.COM\b/, /^STEAM PURCHASE\b/] },
  { name: 'Peloton', patterns: [/^PELOTON\b/] },
  // Telecom and utilities
  { name: 'Comcast', patterns: [/^COMCAST\b/] },
  { name: 'Xfinity Mobile', patterns: [/^XFINITY MOBILE\b/] },
  { name: 'Verizon', patterns: [/^VERIZON\b/, /^VZ ?WIRELESS\b/, /^VZWRLSS\b/] },
  { name: 'AT&T', id: 'att', patterns: [/^AT&T\b/, /^ATT\*/] },
  { name: 'T-Mobile', patterns: [/^T-?MOBILE\b/] },
  // Retail
  {
    name: 'Amazon',
    patterns: [/^AMZN MKTP\b/, /^AMAZON\.COM\b/, /^AMAZON MKTPL?\b/, /^AMZN\.COM\b/],
  },
  { name: 'Walmart', patterns: [/^WALMART\b/, /^WAL-MART\b/, /^WM SUPERCENTER\b/] },
  { name: 'Target', patterns: [/^TARGET\b/] },
  { name: 'Costco', patterns: [/^COSTCO\b/] },
  { name: 'Best Buy', patterns: [/^BEST ?BUY\b/] },
  { name: 'IKEA', patterns: [/^IKEA\b/] },
  { name: 'The Home Depot', patterns: [/^(THE )?HOME ?DEPOT\b/] },
  { name: "Lowe's", patterns: [/^LOWE'?S\b/] },
  { name: 'Sephora', patterns: [/^SEPHORA\b/] },
  { name: 'Nike', patterns: [/^NIKE\b/] },
  { name: 'eBay', patterns: [/^EBAY\b/] },
  { name: 'Etsy', patterns: [/^ETSY\b/] },
  // Grocery and pharmacy
  { name: 'Whole Foods Market', patterns: [/^WHOLEFDS\b/, /^WFM\b/, /^WHOLE FOODS\b/] },
  { name: "Trader Joe's", patterns: [/^TRADER JOE ?'?S?\b/] },
  { name: 'Safeway', patterns: [/^SAFEWAY\b/] },
  { name: 'Kroger', patterns: [/^KROGER\b/] },
  { name: 'Instacart', patterns: [/^INSTACART\b/] },
  { name: 'CVS Pharmacy', patterns: [/^CVS\b/] },
  { name: 'Walgreens', patterns: [/^WALGREENS\b/, /^WAG\*/] },
  // Food and drink
  { name: "McDonald's", patterns: [/^MCDONALD'?S\b/, /^MCD\b/] },
  { name: 'Starbucks', patterns: [/^STARBUCKS\b/, /^SBUX\b/] },
  { name: "Dunkin'", patterns: [/^DUNKIN\b/] },
  { name: 'Chipotle', patterns: [/^CHIPOTLE\b/] },
  { name: 'Chick-fil-A', patterns: [/^CHICK[- ]FIL[- ]A\b/] },
  { name: 'Panera Bread', patterns: [/^PANERA\b/] },
  { name: 'Subway', patterns: [/^SUBWAY\b/] },
  { name: 'Pizza Hut', patterns: [/^PIZZA HUT\b/] },
  { name: 'Taco Bell', patterns: [/^TACO BELL\b/] },
  { name: "Domino's", patterns: [/^DOMINO'?S\b/] },
  { name: "Wendy's", patterns: [/^WENDY'?S\b/] },
  { name: 'Burger King', patterns: [/^BURGER KING\b/, /^BK #?\d/] },
  { name: 'Blue Bottle Coffee', patterns: [/^BLUE BOTTLE\b/] },
  { name: 'Grubhub', patterns: [/^GRUBHUB\b/] },
  { name: 'DoorDash', patterns: [/^DOORDASH\b/] },
  { name: 'Uber Eats', patterns: [/^UBER ?\*? ?EATS\b/] },
  // Travel and transport
  { name: 'Uber', patterns: [/^UBER\b/] },
  { name: 'Lyft', patterns: [/^LYFT\b/] },
  { name: 'Lime', patterns: [/^LIME\*/] },
  { name: 'Airbnb', patterns: [/^AIRBNB\b/] },
  { name: 'Marriott', patterns: [/^MARRIOTT\b/, /^COURTYARD BY MARRIOTT\b/] },
  { name: 'Hilton', patterns: [/^HILTON\b/] },
  { name: 'Hampton Inn', patterns: [/^HAMPTON INN\b/] },
  { name: 'Delta Air Lines', patterns: [/^DELTA\b/] },
  { name: 'United Airlines', patterns: [/^UNITED(\.COM)?\b/] },
  { name: 'Southwest Airlines', patterns: [/^SOUTHWES(T)?\b/] },
  { name: 'ParkMobile', patterns: [/^PARKMOBILE\b/] },
  { name: 'SpotHero', patterns: [/^SPOTHERO\b/] },
  { name: 'Shell', patterns: [/^SHELL\b/] },
  { name: 'ExxonMobil', patterns: [/^EXXON/] },
  { name: 'Chevron', patterns: [/^CHEVRON\b/] },
  { name: 'Planet Fitness', patterns: [/^PLANET FITNESS\b/, /^PF CLUB FEES\b/] },
  // Payments
  { name: 'Venmo', patterns: [/^VENMO\b/] },
  { name: 'PayPal', patterns: [/^PAYPAL\b/] },
];

const SQUARE: Intermediary = { id: 'square', name: 'Square', kind: 'processor' };
const TOAST: Intermediary = { id: 'toast', name: 'Toast', kind: 'processor' };
const SHOPIFY: Intermediary = { id: 'shopify', name: 'Shopify', kind: 'processor' };
const PAYPAL: Intermediary = { id: 'paypal', name: 'PayPal', kind: 'processor' };
const GOOGLE_PAY: Intermediary = { id: 'google', name: 'Google', kind: 'processor' };
const VENMO: Intermediary = { id: 'venmo', name: 'Venmo', kind: 'processor' };
const GRUBHUB: Intermediary = { id: 'grubhub', name: 'Grubhub', kind: 'platform' };
const DOORDASH: Intermediary = { id: 'doordash', name: 'DoorDash', kind: 'platform' };
const INSTACART: Intermediary = { id: 'instacart', name: 'Instacart', kind: 'platform' };

/**
 * Prefixes that payment processors and platforms put before the real merchant ("SQ *BLUE
 * BOTTLE", "PAYPAL *SPOTIFY", "Payment Netflix APRIL***"). `intermediary` is who the prefix
 * names (none for a bare "Payment"). `fallback` is the answer when what follows names no
 * merchant (a bare reference code or a generic word): the platform itself, or null for pure
 * processors that are never the merchant. Prefixes can nest ("PAYPAL *DOORDASH*POKE BAR").
 */
export interface Processor {
  prefix: RegExp;
  intermediary: Intermediary | null;
  fallback: string | null;
}

export const PROCESSORS: readonly Processor[] = [
  { prefix: /^SQU? ?\* ?/, intermediary: SQUARE, fallback: null },
  { prefix: /^TST ?\* ?/, intermediary: TOAST, fallback: null },
  { prefix: /^SP ?\* ?/, intermediary: SHOPIFY, fallback: null },
  { prefix: /^PAYPAL ?\* ?/, intermediary: PAYPAL, fallback: 'PayPal' },
  { prefix: /^PP ?\* ?/, intermediary: PAYPAL, fallback: 'PayPal' },
  { prefix: /^GOOGLE ?\* ?/, intermediary: GOOGLE_PAY, fallback: 'Google' },
  { prefix: /^VENMO ?\* ?/, intermediary: VENMO, fallback: 'Venmo' },
  { prefix: /^GRUBHUB ?\* ?/, intermediary: GRUBHUB, fallback: 'Grubhub' },
  { prefix: /^DD ?\* ?DOORDASH /, intermediary: DOORDASH, fallback: 'DoorDash' },
  { prefix: /^DOORDASH ?\* ?/, intermediary: DOORDASH, fallback: 'DoorDash' },
  { prefix: /^IC ?\* ?/, intermediary: INSTACART, fallback: 'Instacart' },
  { prefix: /^PAYMENT (TO )?/, intermediary: null, fallback: null },
];

/** Words that say what kind of payment it was, never who was paid. */
export const GENERIC_WORDS = new Set([
  'TRANSFER',
  'PAYMENT',
  'PENDING',
  'AUTH',
  'HOLD',
  'TEMP',
  'PURCHASE',
  'SUBSCRIPTION',
  'VISA',
  'DIRECT',
  'ONLINE',
  'INC',
]);
