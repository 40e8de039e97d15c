/**
 * Realistic /v1/rank bodies from the synthetic world (world/): a small world is built once and a
 * pool of distinct bodies is generated and serialized up front, so that the load generator only
 * sends bytes. Candidates keep the world's own cpc/cpa/cpm mix, so both the ctr and the cvr model run.
 */
import { toColumnarForm } from '../../src/features/columnar.js';
import type { RankRequest as ServerRankRequest } from '../../src/features/request.js';
import { createWorld, generateRankRequest, type RankRequest } from '../../world/index.js';
import type { Surface } from '../../world/index.js';

export interface BodyOptions {
  count: number;
  candidates: number;
  history: number;
  surface: Surface;
  seed: number;
  users?: number;
  ads?: number;
  /** Wire form of the bodies: `rows` (arrays of objects) or `columns` (src/features/columnar.ts). */
  format?: 'rows' | 'columns';
}

export interface BodySet {
  requests: RankRequest[];
  buffers: Buffer[];
  stats: {
    count: number;
    candidates: number;
    history: number;
    surface: string;
    distinctUsers: number;
    bidTypes: Record<string, number>;
    requestsWithCpa: number;
    meanBytes: number;
    worldMs: number;
    generateMs: number;
  };
}

export function makeBodies(options: BodyOptions): BodySet {
  const t0 = performance.now();
  const world = createWorld({ users: options.users ?? 2000, ads: options.ads ?? 5000, seed: options.seed });
  const t1 = performance.now();
  const requests: RankRequest[] = [];
  for (let i = 0; i < options.count; i++) {
    requests.push(generateRankRequest(world, { surface: options.surface, candidates: options.candidates, historyLength: options.history, seed: 10_000 + i }));
  }
  const t2 = performance.now();
  const wire = (r: RankRequest) => (options.format === 'columns' ? toColumnarForm(r as unknown as ServerRankRequest) : r);
  const buffers = requests.map((r) => Buffer.from(JSON.stringify(wire(r))));
  const bidTypes: Record<string, number> = {};
  let withCpa = 0;
  for (const r of requests) {
    let cpa = false;
    for (const c of r.candidates) {
      bidTypes[c.bidType] = (bidTypes[c.bidType] ?? 0) + 1;
      if (c.bidType === 'cpa') cpa = true;
    }
    if (cpa) withCpa++;
  }
  return {
    requests,
    buffers,
    stats: {
      count: requests.length,
      candidates: options.candidates,
      history: options.history,
      surface: options.surface,
      distinctUsers: new Set(requests.map((r) => r.user.id)).size,
      bidTypes,
      requestsWithCpa: withCpa,
      meanBytes: Math.round(buffers.reduce((a, b) => a + b.length, 0) / Math.max(1, buffers.length)),
      worldMs: Math.round(t1 - t0),
      generateMs: Math.round(t2 - t1),
    },
  };
}

/** The same body with extra top-level fields (deadlineMs, ...) prepended. */
export function withFields(body: Buffer, fields: Record<string, unknown>): Buffer {
  const head = JSON.stringify(fields).slice(0, -1);
  return Buffer.concat([Buffer.from(head + ','), body.subarray(1)]);
}

/**
 * Bodies whose user id can be rewritten per request without re-serializing (canary share
 * measurement needs many distinct users; bucketing is by user id). Returns [prefix, suffix] pairs.
 */
export function userIdTemplates(requests: RankRequest[]): Array<[Buffer, Buffer]> {
  const kMarker = 987654321012345;
  return requests.map((r) => {
    const text = JSON.stringify({ ...r, user: { ...r.user, id: kMarker } });
    const at = text.indexOf(String(kMarker));
    return [Buffer.from(text.slice(0, at)), Buffer.from(text.slice(at + String(kMarker).length))];
  });
}
