import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** One JSON line per event on stdout. Transaction descriptions are never logged at info. */
export function createLogger(level: LogLevel): Logger {
  return pino({
    level,
    base: { service: 'merchant-normalizer' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
