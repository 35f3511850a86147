/**
 * JSON Schemas for request bodies: the one definition ajv validates with (and the OpenAPI
 * document will be built from).
 */

export const transactionSchema = {
  $id: 'Transaction',
  type: 'object',
  additionalProperties: false,
  required: ['date', 'description', 'amount'],
  properties: {
    date: {
      type: 'string',
      format: 'date',
      description: 'Booking date, YYYY-MM-DD (a real calendar date).',
      examples: ['2026-04-03'],
    },
    description: {
      type: 'string',
      minLength: 1,
      maxLength: 500,
      pattern: '\\S',
      description: 'The descriptor printed on the card statement.',
      examples: ['Payment Netflix APRIL***'],
    },
    amount: {
      type: 'number',
      description: 'Signed amount in the currency unit; negative for refunds.',
      examples: [15.49],
    },
    currency: {
      type: 'string',
      format: 'iso4217',
      description: 'ISO 4217 currency code, upper case.',
      examples: ['USD'],
    },
    mcc: {
      type: 'string',
      pattern: '^[0-9]{4}$',
      description: 'Merchant category code: four digits, as a string.',
      examples: ['5411'],
    },
    reference: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      description: "The client's own identifier for the transaction, echoed back untouched.",
      examples: ['txn-000123'],
    },
  },
} as const;

/** What a field must look like, said in words, for the errors ajv reports by keyword. */
export const FIELD_RULES: Record<string, string> = {
  date: 'must be a real calendar date formatted YYYY-MM-DD, e.g. "2026-04-03"',
  description: 'must be a string of 1 to 500 characters, not only whitespace',
  amount: 'must be a finite JSON number, e.g. 15.49 or -3 (not a string)',
  currency: 'must be an upper-case ISO 4217 currency code, e.g. "USD"',
  mcc: 'must be a four-digit merchant category code as a string, e.g. "5411"',
  reference: 'must be a string of 1 to 200 characters',
};
