/** JSON Schemas for POST /v1/rank, compiled once at boot by Fastify; limits come from config. */
import type { Config } from '../config.js';

const kMaxId = Number.MAX_SAFE_INTEGER;

export function rankSchemas(config: Pick<Config, 'maxCandidates' | 'maxHistory' | 'maxFeatureEntries'>) {
  const id = { type: 'integer', minimum: 0, maximum: kMaxId };
  const features = {
    type: 'object',
    maxProperties: config.maxFeatureEntries,
    additionalProperties: { anyOf: [{ type: 'number' }, { type: 'string', maxLength: 128 }] },
  };
  const body = {
    type: 'object',
    required: ['surface', 'user', 'candidates'],
    additionalProperties: false,
    properties: {
      surface: { type: 'string', enum: ['feed', 'stories', 'reels', 'marketplace'] },
      requestId: { type: 'string', maxLength: 128 },
      user: {
        type: 'object',
        required: ['id'],
        additionalProperties: false,
        properties: {
          id,
          features,
          history: {
            type: 'array',
            maxItems: config.maxHistory,
            items: {
              type: 'object',
              required: ['adId', 'surface', 'event', 'ts'],
              additionalProperties: false,
              properties: {
                adId: id,
                category: id,
                surface: { type: 'string', enum: ['feed', 'stories', 'reels', 'marketplace'] },
                event: { type: 'string', enum: ['impression', 'click', 'conversion'] },
                ts: { type: 'number', minimum: 0 },
              },
            },
          },
        },
      },
      context: features,
      candidates: {
        type: 'array',
        minItems: 1,
        maxItems: config.maxCandidates,
        items: {
          type: 'object',
          required: ['adId', 'advertiserId', 'category', 'bid', 'bidType'],
          additionalProperties: false,
          properties: {
            adId: id,
            advertiserId: id,
            category: id,
            bid: { type: 'number', minimum: 0 },
            bidType: { type: 'string', enum: ['cpc', 'cpa', 'cpm'] },
            features,
          },
        },
      },
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
