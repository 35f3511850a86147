/**
 * The original service's answer, checked: `{"merchant": {"name": …} | null}`, optionally with
 * `merchant.id` and `intermediaries` (as the stand-in gives them). Other fields are ignored, so
 * the remote side may add some; anything else wrong is an error naming the field.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { SLUG_PATTERN, slugOf } from './slug.js';
import { INTERMEDIARY_KINDS, type MatchResult } from './types.js';

const slug = { type: 'string', pattern: SLUG_PATTERN.source, maxLength: 200 } as const;
const text = { type: 'string', pattern: '\\S', maxLength: 500 } as const;

const answerSchema = {
  type: 'object',
  required: ['merchant'],
  properties: {
    merchant: {
      type: ['object', 'null'],
      required: ['name'],
      properties: { name: text, id: slug },
    },
    intermediaries: {
      type: 'array',
      maxItems: 20,
      items: {
        type: 'object',
        required: ['id', 'name', 'kind'],
        properties: { id: slug, name: text, kind: { enum: INTERMEDIARY_KINDS } },
      },
    },
  },
} as const;

interface Answer {
  merchant: { name: string; id?: string } | null;
  intermediaries?: { id: string; name: string; kind: (typeof INTERMEDIARY_KINDS)[number] }[];
}

const validate = new Ajv({ allowUnionTypes: true, verbose: true }).compile<Answer>(answerSchema);

/** The MatchResult in `body`; throws an Error saying what is wrong with it. */
export function parseAnswer(body: string): MatchResult {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new Error(`not JSON (${body.trim() === '' ? 'empty body' : `starts ${quote(body)}`})`);
  }
  if (!validate(json)) throw new Error(explain(validate.errors?.[0]));
  const { merchant, intermediaries } = json;
  const id = merchant ? (merchant.id ?? slugOf(merchant.name)) : null;
  return {
    merchant: merchant ? { name: merchant.name, ...(id !== null && { id }) } : null,
    ...(intermediaries && {
      intermediaries: intermediaries.map(({ id, name, kind }) => ({ id, name, kind })),
    }),
  };
}

function explain(error: ErrorObject | undefined): string {
  if (!error) return 'does not match {"merchant": {"name": …} | null}';
  const field =
    error.instancePath
      .slice(1)
      .replace(/\/(\d+)/g, '[$1]')
      .replace(/\//g, '.') || 'the answer';
  const params = error.params as { type?: string | string[]; allowedValues?: unknown[] };
  let rule = error.message ?? 'is invalid';
  if (error.keyword === 'type') rule = `must be ${[params.type ?? []].flat().join(' or ')}`;
  if (error.keyword === 'enum') rule = `must be one of ${(params.allowedValues ?? []).join(', ')}`;
  if (error.keyword === 'pattern') {
    rule = field.endsWith('id')
      ? 'must be a lower-case slug (a-z, 0-9, single hyphens)'
      : 'must not be blank';
  }
  return `${field} ${rule} (got ${clip(JSON.stringify(error.data) ?? 'nothing')})`;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

function quote(text: string): string {
  return JSON.stringify(clip(text));
}
