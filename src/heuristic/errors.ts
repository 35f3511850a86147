/** Thrown by a heuristic when retrying cannot help (bad input it cannot handle): fail at once. */
export class NonRetryableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}
