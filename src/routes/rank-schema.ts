/** JSON Schemas for POST /v1/rank, compiled once at boot by Fastify; limits come from config. */
import type { Config } from '../config.js';
import { kFloat32Max } from '../features/request.js';
import { kSurfaces } from '../models/manifest.js';

const kMaxId = Number.MAX_SAFE_INTEGER;

export function rankSchemas(config: Pick<Config, 'maxCandidates' | 'maxHistory' | 'maxFeatureEntries'>) {
  const id = { type: 'integer', minimum: 0, maximum: kMaxId };
  const surface = { type: 'string', enum: [...kSurfaces] };
  // Type unions rather than anyOf: Ajv records an error object (with its instance path) for every
  // failed anyOf branch before the next branch passes, which on 500 candidates with a string feature
  // each was the validator's main allocation. maxLength applies to strings only.
  const featureValue = { type: ['number', 'string'], maxLength: 128 };
  const features = { type: 'object', maxProperties: config.maxFeatureEntries, additionalProperties: featureValue };
  // One definition per field, used by both the row form (an array of objects) and the columnar form
  // (an object of equal-length arrays, src/features/columnar.ts checks the lengths).
  const historyFields = {
    adId: id,
    category: id,
    surface,
    event: { type: 'string', enum: ['impression', 'click', 'conversion'] },
    ts: { type: 'number', minimum: 0 },
  };
  const candidateFields = {
    adId: id,
    advertiserId: id,
    category: id,
    // At most float32's range: bids are logged for retraining as float32, and eCPM stays finite.
    bid: { type: 'number', minimum: 0, maximum: kFloat32Max },
    bidType: { type: 'string', enum: ['cpc', 'cpa', 'cpm'] },
  };
  const column = (items: object, minItems: number, maxItems: number) => ({ type: 'array', minItems, maxItems, items });
  const orNull = (schema: { type: string | string[]; enum?: unknown[] }) => ({
    ...schema,
    type: [schema.type, 'null'].flat(),
    ...(schema.enum ? { enum: [...schema.enum, null] } : {}),
  });
  const columnsOf = (fields: Record<string, { type: string }>, minItems: number, maxItems: number, nullable: string[] = []) =>
    Object.fromEntries(Object.entries(fields).map(([name, schema]) => [name, column(nullable.includes(name) ? orNull(schema) : schema, minItems, maxItems)]));
  const history = {
    if: { type: 'array' },
    then: {
      type: 'array',
      maxItems: config.maxHistory,
      items: { type: 'object', required: ['adId', 'surface', 'event', 'ts'], additionalProperties: false, properties: historyFields },
    },
    else: {
      type: 'object',
      required: ['adId', 'surface', 'event', 'ts'],
      additionalProperties: false,
      properties: columnsOf(historyFields, 0, config.maxHistory, ['category']),
    },
  };
  const candidates = {
    if: { type: 'array' },
    then: {
      type: 'array',
      minItems: 1,
      maxItems: config.maxCandidates,
      items: {
        type: 'object',
        required: ['adId', 'advertiserId', 'category', 'bid', 'bidType'],
        additionalProperties: false,
        properties: { ...candidateFields, features },
      },
    },
    else: {
      type: 'object',
      required: ['adId', 'advertiserId', 'category', 'bid', 'bidType'],
      additionalProperties: false,
      properties: {
        ...columnsOf(candidateFields, 1, config.maxCandidates),
        features: {
          type: 'object',
          maxProperties: config.maxFeatureEntries,
          additionalProperties: column(orNull(featureValue), 1, config.maxCandidates),
        },
      },
    },
  };
  const body = {
    type: 'object',
    required: ['surface', 'user', 'candidates'],
    additionalProperties: false,
    properties: {
      surface,
      requestId: { type: 'string', maxLength: 128 },
      user: {
        type: 'object',
        required: ['id'],
        additionalProperties: false,
        properties: { id, features, history },
      },
      context: features,
      candidates,
      topK: { type: 'integer', minimum: 1, maximum: config.maxCandidates },
      deadlineMs: { type: 'number', exclusiveMinimum: 0, maximum: 60000 },
      pin: { type: 'object', maxProperties: 8, propertyNames: { pattern: '^[a-z][a-z0-9-]{0,62}$' }, additionalProperties: { type: 'integer', minimum: 1 } },
    },
  };
  const modelRef = {
    type: 'object',
    properties: { name: { type: 'string' }, version: { type: 'integer' }, arm: { type: 'string' } },
  };
  const response = {
    200: {
      type: 'object',
      properties: {
        requestId: { type: 'string' },
        surface: { type: 'string' },
        models: { type: 'object', properties: { ctr: modelRef, cvr: modelRef } },
        ranked: {
          type: 'array',
          items: {
            type: 'object',
            properties: { adId: { type: 'integer' }, pctr: { type: 'number' }, pcvr: { type: 'number' }, ecpm: { type: 'number' }, rank: { type: 'integer' } },
          },
        },
        historyTruncated: { type: 'integer' },
        timings: { type: 'object', properties: { totalMs: { type: 'number' }, featuresMs: { type: 'number' }, scoreMs: { type: 'number' } } },
      },
    },
  };
  return { body, response };
}
