/**
 * Open Inference Protocol v2 (KServe / Triton compatible): health, server and model metadata, and
 * raw tensor inference on any ready version.
 */
import type { FastifyInstance } from 'fastify';
import { Errors } from '../errors.js';
import type { InferencePool } from '../models/pool.js';
import type { ModelRegistry, ModelVersion } from '../models/registry.js';
import { feedsFromRawInputs, kOipTypes, requireFiniteOutputs, type RawInput, type RawLimits } from '../models/raw-feeds.js';

export interface V2RouteOptions {
  registry: ModelRegistry;
  pool: InferencePool;
  isReady(): boolean;
  version: string;
  limits: RawLimits;
}

function latestReady(registry: ModelRegistry, name: string): ModelVersion {
  const route = registry.routing.models.get(name);
  if (route) return route.stable;
  const versions = registry.versions(name);
  if (versions.length === 0) throw Errors.UNKNOWN_MODEL(name);
  const ready = versions.filter((v) => v.state === 'ready');
  if (ready.length === 0) throw Errors.NO_MODEL(name);
  return ready[ready.length - 1];
}

function pick(registry: ModelRegistry, name: string, version?: string): ModelVersion {
  if (version === undefined) return latestReady(registry, name);
  if (!/^[1-9][0-9]{0,8}$/.test(version)) throw Errors.BAD_IDENTIFIER('version', version);
  return registry.require(name, Number(version));
}

function metadata(entry: ModelVersion) {
  const dims = (shape: Array<string | number>) => shape.map((d) => (typeof d === 'number' ? d : -1));
  return {
    name: entry.name,
    versions: [String(entry.version)],
    platform: 'onnxruntime_onnx',
    state: entry.state,
    inputs: (entry.manifest?.inputs ?? []).map((i) => ({ name: i.name, datatype: kOipTypes[i.dtype], shape: dims(i.shape) })),
    outputs: (entry.manifest?.outputs ?? []).map((o) => ({ name: o.name, datatype: kOipTypes[o.dtype], shape: dims(o.shape) })),
  };
}

const inferSchema = {
  body: {
    type: 'object',
    required: ['inputs'],
    properties: {
      id: { type: 'string' },
      inputs: {
        type: 'array',
        minItems: 1,
        maxItems: 32,
        items: {
          type: 'object',
          required: ['name', 'datatype', 'shape', 'data'],
          properties: {
            name: { type: 'string' },
            datatype: { type: 'string', enum: ['INT64', 'FP32'] },
            shape: { type: 'array', maxItems: 4, items: { type: 'integer', minimum: 0 } },
            data: { type: 'array', items: { type: 'number' } },
          },
        },
      },
    },
  },
};

interface InferBody {
  id?: string;
  inputs: RawInput[];
}

export async function v2Routes(app: FastifyInstance, { registry, pool, isReady, version, limits }: V2RouteOptions): Promise<void> {
  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_request, reply) => {
    const ready = isReady();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  app.get('/v2', async () => ({ name: 'gem-lite-ranker', version, extensions: ['model_repository'] }));

  app.get<{ Params: { name: string } }>('/v2/models/:name', async (request) => metadata(pick(registry, request.params.name)));
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version', async (request) =>
    metadata(pick(registry, request.params.name, request.params.version)),
  );
  const readyHandler = async (request: { params: { name: string; version?: string } }, reply: import('fastify').FastifyReply) => {
    const entry = pick(registry, request.params.name, request.params.version);
    // Loaded is not enough: after a failed reload no inference worker may hold it (it is retried).
    const ready = entry.state === 'ready' && pool.mayServe(entry.key);
    return reply.code(ready ? 200 : 503).send({ name: entry.name, version: String(entry.version), ready });
  };
  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', readyHandler);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/ready', readyHandler);

  const inferHandler = async (request: { params: { name: string; version?: string }; body: InferBody }) => {
    const entry = pick(registry, request.params.name, request.params.version);
    if (entry.state !== 'ready') throw Errors.VERSION_NOT_READY(entry.key, entry.state);
    const feeds = feedsFromRawInputs(entry.manifest!, request.body.inputs, limits);
    registry.acquire(entry);
    try {
      const { outputs } = await pool.runFeeds(entry.key, feeds);
      requireFiniteOutputs(entry.key, outputs);
      return {
        id: request.body.id,
        model_name: entry.name,
        model_version: String(entry.version),
        outputs: Object.entries(outputs).map(([name, data]) => ({ name, datatype: 'FP32', shape: [data.length], data: Array.from(data) })),
      };
    } finally {
      registry.release(entry);
    }
  };
  app.post<{ Params: { name: string }; Body: InferBody }>('/v2/models/:name/infer', { schema: inferSchema }, inferHandler);
  app.post<{ Params: { name: string; version: string }; Body: InferBody }>('/v2/models/:name/versions/:version/infer', { schema: inferSchema }, inferHandler);
}
