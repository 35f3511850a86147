/**
 * Reading environment variables: each reader validates one value, records a problem naming the
 * variable when it is bad, and returns a fallback so every problem is reported at once.
 * Used by loadConfig (config.ts) and the stand-in's config; nothing else reads the environment.
 */

export type Env = Record<string, string | undefined>;

/** Inclusive latency range (of the mock heuristic, the stand-in), in milliseconds. */
export interface DelayRange {
  min: number;
  max: number;
}

/** Readers of environment variables that collect a problem for each bad value. */
export function envReader(env: Env) {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };

  const int = (name: string, fallback: number, min: number, max: number): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${value}")`);
      return fallback;
    }
    return n;
  };

  /** A non-negative decimal from `min` (or above it, if `minExclusive`) to `max`. */
  const decimal = (
    name: string,
    fallback: number,
    range: { min: number; max: number; minExclusive?: boolean },
  ): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    const aboveMin = range.minExclusive ? n > range.min : n >= range.min;
    if (!/^\d*\.?\d+$/.test(value) || !aboveMin || n > range.max) {
      const from = range.minExclusive ? `above ${range.min}` : `from ${range.min}`;
      problems.push(`${name} must be a number ${from} to ${range.max} (got "${value}")`);
      return fallback;
    }
    return n;
  };

  const delay = (name: string, fallback: DelayRange): DelayRange => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(value);
    const min = m ? Number(m[1]) : NaN;
    const max = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || min > max || max > 600_000) {
      problems.push(
        `${name} must be "N" or "MIN-MAX" milliseconds, MIN <= MAX <= 600000 (got "${value}")`,
      );
      return fallback;
    }
    return { min, max };
  };

  /** One of `choices`, case-insensitive. */
  const oneOf = <T extends string>(name: string, choices: readonly T[], fallback: T): T => {
    const value = raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if ((choices as readonly string[]).includes(value)) return value as T;
    problems.push(`${name} must be one of ${choices.join(', ')} (got "${raw(name)}")`);
    return fallback;
  };

  /** An http:// or https:// URL. */
  const httpUrl = (name: string): string | undefined => {
    const value = raw(name);
    if (value === undefined || (URL.canParse(value) && /^https?:\/\//i.test(value))) return value;
    problems.push(`${name} must be an http:// or https:// URL (got "${value}")`);
    return undefined;
  };

  const bool = (name: string, fallback: boolean): boolean => {
    const value = raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    problems.push(`${name} must be true or false (got "${raw(name)}")`);
    return fallback;
  };

  /** A comma-separated list of durations: `250ms`, `5s`, `5m`, `2h`, `1d`, or bare milliseconds. */
  const durations = (name: string, fallback: number[], maxMs: number): number[] => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
    const parsed = value.split(',').map((part) => {
      const m = /^(\d+)\s*(ms|s|m|h|d)?$/.exec(part.trim());
      return m ? Number(m[1]) * (unit[m[2] ?? 'ms'] ?? NaN) : NaN;
    });
    if (parsed.length > 50 || parsed.some((n) => !Number.isSafeInteger(n) || n > maxMs)) {
      problems.push(
        `${name} must be up to 50 comma-separated durations such as 5s,5m,2h (each at most 7d; got "${value}")`,
      );
      return fallback;
    }
    return parsed;
  };

  return { problems, raw, int, decimal, delay, oneOf, httpUrl, bool, durations };
}
