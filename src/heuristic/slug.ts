/**
 * Stable identifiers for merchants and intermediaries: lower-case ASCII slugs derived from the
 * display name, so a client can join on them ("Blue Bottle Coffee" -> "blue-bottle-coffee").
 */

/**
 * The slug of `name`: accents folded, `'` dropped (`Lowe's` -> `lowes`), `&` read as "and",
 * `+` as "plus", every other run of non-alphanumerics a single `-`. `null` when nothing is
 * left (a name of only punctuation).
 */
export function slugOf(name: string): string | null {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/['\u2019]/g, '')
    .replace(/&/g, ' and ')
    .replace(/\+/g, ' plus ')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return slug === '' ? null : slug;
}

/** Shape of an id: what `slugOf` produces (also the rule the HTTP adapter checks ids against). */
export const SLUG_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
