/**
 * Configuration of the stand-in for the original synchronous service (`npm run standin`).
 */
import { ConfigError, type DelayRange, LOG_LEVELS, type LogLevel } from '../config.js';
import { type Env, envReader } from '../env.js';

/** What the stand-in does instead of answering: an HTTP status, a dropped connection, a
 * malformed answer, or no answer at all. */
export type StandinFailure = `${number}` | 'reset' | 'malformed' | 'hang';

/** The stand-in for the original synchronous service (`npm run standin`). */
export interface StandinConfig {
  /** @defaultValue 9899 */
  port: number;
  /** @defaultValue `0.0.0.0` */
  host: string;
  /** Latency of each answer, like the original's. @defaultValue 1000-30000 */
  delayMs: DelayRange;
  /** Failures injected, each with its probability per request. @defaultValue none */
  failures: { failure: StandinFailure; rate: number }[];
  /** @defaultValue info */
  logLevel: LogLevel;
}

/**
 * Reads the stand-in's configuration: `STANDIN_PORT`, `STANDIN_HOST`, `STANDIN_DELAY_MS`,
 * `STANDIN_FAILURES` ("503:0.1,reset:0.05,malformed:0.02,hang:0.01"; statuses 400-599, rates
 * summing to at most 1) and `LOG_LEVEL`.
 */
export function loadStandinConfig(env: Env = process.env): Readonly<StandinConfig> {
  const { problems, raw, int, delay, oneOf } = envReader(env);
  const failures: StandinConfig['failures'] = [];
  const spec = raw('STANDIN_FAILURES');
  for (const item of spec?.split(',') ?? []) {
    const m = /^\s*(reset|malformed|hang|[45]\d\d)\s*:\s*(\d*\.?\d+)\s*$/i.exec(item);
    const rate = Number(m?.[2]);
    if (!m?.[1] || !(rate >= 0 && rate <= 1)) {
      problems.push(
        `STANDIN_FAILURES must be a list of KIND:RATE, KIND a status from 400 to 599 or reset, ` +
          `malformed or hang, RATE from 0 to 1 (got "${spec}")`,
      );
      break;
    }
    failures.push({ failure: m[1].toLowerCase() as StandinFailure, rate });
  }
  if (failures.reduce((sum, f) => sum + f.rate, 0) > 1) {
    problems.push(`STANDIN_FAILURES rates must add up to at most 1 (got "${spec}")`);
  }
  const config: StandinConfig = {
    port: int('STANDIN_PORT', 9899, 0, 65535),
    host: raw('STANDIN_HOST') ?? '0.0.0.0',
    delayMs: delay('STANDIN_DELAY_MS', { min: 1000, max: 30_000 }),
    failures,
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
