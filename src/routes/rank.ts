/**
 * POST /v1/rank: HTTP only. Validation by the compiled schema (rows or columns), the columnar form is
 * turned into rows (src/features/columnar.ts), and the work is RankService's.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { context, propagation, trace } from '@opentelemetry/api';
import type { Config } from '../config.js';
import { pathInBody, toRowForm, type RankRequestBody } from '../features/columnar.js';
import { badRequestPath, Errors, isRankerError } from '../errors.js';
import { kSurfaces } from '../models/manifest.js';
import type { Metrics } from '../metrics.js';
import type { RankService } from '../ranking/rank-service.js';
import { rankSchemas } from './rank-schema.js';
import { TurnQueue } from './turn-queue.js';

const tracer = trace.getTracer('gem-lite-ranker');
const kKnownSurfaces: ReadonlySet<string> = new Set(kSurfaces);

/** A 400 found while encoding the row form, pointed at where the value is in the client's body. */
function inClientForm(error: unknown, body: RankRequestBody): unknown {
  const raised = isRankerError(error) ? badRequestPath(error) : null;
  if (!raised) return error;
  const moved = pathInBody(raised.path, body);
  return moved === raised.path ? error : Errors.BAD_REQUEST(moved, raised.why);
}

export interface RankRouteOptions {
  config: Config;
  service: RankService;
  metrics: Metrics;
  /**
   * True while requests are being refused and new connections keep arriving: a flood of connections
   * waiting for accept(), which is when parse turns are bounded (src/app.ts).
   */
  boundParseTurns: () => boolean;
}

export async function rankRoutes(app: FastifyInstance, { config, service, metrics, boundParseTurns }: RankRouteOptions): Promise<void> {
  const schema = rankSchemas(config);
  if (config.parseTurnBudgetMs > 0) {
    // Fastify's own JSON parser (prototype-poisoning checks, its error codes), run from a queue:
    // whole bursts while the server keeps up (they feed cross-request batching), turns bounded to the
    // budget while a flood of new connections waits for accept(). Bounding whenever a burst merely
    // grew large, or whenever requests were refused, fed on itself near capacity (smaller batches,
    // slower, more refusals): docs/DESIGN-NOTES.md 12.
    const parseJson = app.getDefaultJsonParser('error', 'error');
    // The parser reports its own errors through done(); anything thrown here is a bug downstream.
    const parseTurns = new TurnQueue(
      () => (boundParseTurns() ? config.parseTurnBudgetMs : Infinity),
      (error) => app.log.error({ err: error }, 'uncaught error while parsing a request'),
      () => metrics.parseTurnsYielded.inc(),
    );
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      parseTurns.push(() => parseJson(request, body as string, done));
    });
  }
  // The response schema documents the answer; JSON.stringify writes it. The schema-compiled
  // serializer turns each number into a string through V8's number-to-string cache, whose strings
  // live in the old generation: ~43 KB of old-space garbage per 500-candidate answer, which (with
  // the ranked items, see RankedItem) forced an old-space collection every ~2 s at 70% load, the
  // clusters of slow requests in the tail. JSON.stringify writes digits straight into its output and
  // is faster too (~210 vs ~250-280 us). RankService builds RankResult field by field, so there is
  // nothing for a schema to strip; a test checks the answer's keys against the schema.
  // Every answer of this route is counted here, whatever answered it: admission control before the
  // body was read, the body parser (400, 413, 415), schema validation, or the handler. The surface
  // label comes from the body only once it is a known surface: label values stay bounded.
  const onResponse = (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const surface = (request.body as { surface?: unknown } | undefined)?.surface;
    metrics.requests.inc({ surface: typeof surface === 'string' && kKnownSurfaces.has(surface) ? surface : 'unparsed', code: String(reply.statusCode) });
    done();
  };
  const routeOptions = { schema: { body: schema.body, response: schema.response }, serializerCompiler: () => JSON.stringify, onResponse };
  app.post<{ Body: RankRequestBody }>('/v1/rank', routeOptions, async (request, reply) => {
    // The deadline and the timings count from the request's arrival (Fastify starts the reply's clock
    // before the onRequest hooks), so the time a request waited for admission and for its body to be
    // read is spent from its deadline, not added after it.
    const started = performance.now() - reply.elapsedTime;
    const body = toRowForm(request.body);
    const parent = propagation.extract(context.active(), request.headers);
    const span = tracer.startSpan('rank', { attributes: { 'rank.surface': body.surface, 'rank.candidates': body.candidates.length } }, parent);
    try {
      const result = await service.rank(body, started);
      metrics.requestMs.observe({ surface: body.surface }, performance.now() - started);
      return reply.send(result);
    } catch (caught) {
      const error = inClientForm(caught, request.body);
      span.recordException(error as Error);
      throw error;
    } finally {
      span.end();
    }
  });
}
