/**
 * Amounts as files write them. The API takes a JSON number; a bank export may write `1,234.50`
 * or `1.234,50`. `--amount-format` names the layout, by example; the default reads plain
 * numbers only, and a formatted one gets an error saying which format would read it.
 */

/** Each layout, named by how it writes one thousand two hundred and thirty-four and 56/100. */
export const AMOUNT_FORMATS = ['1234.56', '1,234.56', '1.234,56', '1 234,56'] as const;
export type AmountFormat = (typeof AMOUNT_FORMATS)[number];

const SIGN = '[+-]?';
/** Spaces used to group digits: space, no-break space, narrow no-break space. */
const SPACES = '[ \\u00a0\\u202f]';

const LAYOUTS: Record<AmountFormat, { pattern: RegExp; group: RegExp; decimal: string }> = {
  '1234.56': { pattern: new RegExp(`^${SIGN}\\d+(\\.\\d+)?$`), group: /$^/, decimal: '.' },
  '1,234.56': {
    pattern: new RegExp(`^${SIGN}(\\d{1,3}(,\\d{3})+|\\d+)(\\.\\d+)?$`),
    group: /,/g,
    decimal: '.',
  },
  '1.234,56': {
    pattern: new RegExp(`^${SIGN}(\\d{1,3}(\\.\\d{3})+|\\d+)(,\\d+)?$`),
    group: /\./g,
    decimal: ',',
  },
  '1 234,56': {
    pattern: new RegExp(`^${SIGN}(\\d{1,3}(${SPACES}\\d{3})+|\\d+)(,\\d+)?$`),
    group: new RegExp(SPACES, 'g'),
    decimal: ',',
  },
};

function read(text: string, format: AmountFormat): number | undefined {
  const layout = LAYOUTS[format];
  if (!layout.pattern.test(text)) return undefined;
  const plain = text.replace(layout.group, '').replace(layout.decimal, '.');
  const n = Number(plain);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The amount `value` writes in `format`, or an error in words ("is not a number: …") that says
 * which `--amount-format` would read it when another one would.
 */
export function parseAmount(value: string, format: AmountFormat): number | { error: string } {
  const text = value.trim();
  const n = read(text, format);
  if (n !== undefined) return n;
  const fits = AMOUNT_FORMATS.filter((f) => f !== format && read(text, f) !== undefined);
  const shown = JSON.stringify(value);
  if (fits.length > 0) {
    const options = fits.map((f) => `--amount-format "${f}"`).join(' or ');
    return {
      error:
        format === '1234.56'
          ? `${shown} is a formatted number; to read it, pass ${options}` +
            (fits.length > 1 ? ', whichever your file uses' : '')
          : `${shown} does not match --amount-format "${format}"; ${options} would read it`,
    };
  }
  return {
    error:
      `${shown} is not a number` +
      (format === '1234.56' ? ': write it like 15.49 or -3' : ` in the "${format}" format`),
  };
}
