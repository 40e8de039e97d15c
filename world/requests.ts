/**
 * Request generator: a sampled user plus a candidate set, as the exact `POST /v1/rank` body of
 * DESIGN.md / docs/CONTRACTS.md, for tests and load tests. `scoreRequest` gives the ground truth
 * for the same body, so a test can compare a served ranking with the oracle.
 */
import { type BidType, type Creative, type Device, type HistoryEvent, kBidTypes, kCreatives, kDevices, kEvents, kMaxRequestHistory, kSurfaces, type Surface } from './config.js';
import { historyLength } from './events.js';
import { Rng } from './rng.js';
import { sampleHour } from './selection.js';
import type { World } from './world.js';

export interface RankHistoryEvent {
  adId: number;
  category: number;
  surface: Surface;
  event: HistoryEvent;
  ts: number;
}

export interface RankCandidate {
  adId: number;
  advertiserId: number;
  category: number;
  bid: number;
  bidType: BidType;
  features: { quality: number; creative: Creative; price_tier: number };
}

export interface RankRequest {
  surface: Surface;
  requestId: string;
  user: {
    id: number;
    features: { age_bucket: number; activity: number; tenure_days: number; device: Device };
    history: RankHistoryEvent[];
  };
  context: { hour: number };
  candidates: RankCandidate[];
  topK?: number;
}

export interface RankRequestOptions {
  surface: Surface;
  /** Number of distinct candidates (capped at the active inventory). */
  candidates: number;
  /**
   * History length wanted: the user is drawn among those with at least this many events (among
   * the longest 1% when none has) and the newest `historyLength` events are sent (at most 4096). Default: a
   * traffic-weighted user with the newest min(own length, 4096) events.
   */
  historyLength?: number;
  seed: number;
  /** Pin the user (index into the world's users) instead of sampling one. */
  userIndex?: number;
  topK?: number;
}

/** Float32 value (as stored in shards) written with the fewest digits that read back to it. */
export function shortFloat32(x: number): number {
  const f = Math.fround(x);
  for (let p = 6; p < 10; p++) {
    const v = Number(f.toPrecision(p));
    if (Math.fround(v) === f) return v;
  }
  return f;
}

interface UserOrder {
  blocks: number;
  /** User indices sorted by history length, ascending, and their lengths. */
  users: Int32Array;
  lengths: Float64Array;
  trafficCum: Float64Array;
}

const kOrders = new WeakMap<World, UserOrder>();

function userOrder(world: World): UserOrder {
  const cached = kOrders.get(world);
  if (cached && cached.blocks === world.history.length) return cached;
  const n = world.entities.users.count;
  const lengths = new Float64Array(n);
  for (let u = 0; u < n; u++) lengths[u] = historyLength(world.history, u);
  const users = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const trafficCum = new Float64Array(n);
  let total = 0;
  for (let u = 0; u < n; u++) {
    total += world.entities.users.impRate[u];
    trafficCum[u] = total;
  }
  const order = { blocks: world.history.length, users, lengths, trafficCum };
  kOrders.set(world, order);
  return order;
}

function pickUser(world: World, rng: Rng, historyWanted: number | undefined): number {
  const order = userOrder(world);
  if (historyWanted === undefined) return rng.pickCumulative(order.trafficCum);
  const n = order.users.length;
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (order.lengths[order.users[mid]] >= historyWanted) hi = mid;
    else lo = mid + 1;
  }
  // Nobody that long: one of the longest 1% of users.
  if (lo >= n) lo = Math.max(0, n - Math.max(1, Math.floor(n / 100)));
  return order.users[lo + rng.int(n - lo)];
}

/** The user's history as request events, oldest first, the newest `limit` kept. */
export function userHistory(world: World, u: number, limit = kMaxRequestHistory): RankHistoryEvent[] {
  const { ads, categories } = world.entities;
  const total = historyLength(world.history, u);
  let skip = Math.max(0, total - Math.min(limit, kMaxRequestHistory));
  const out: RankHistoryEvent[] = [];
  for (const block of world.history) {
    const from = block.offsets[u];
    const to = block.offsets[u + 1];
    if (skip >= to - from) {
      skip -= to - from;
      continue;
    }
    for (let e = from + skip; e < to; e++) {
      const j = block.ad[e];
      out.push({
        adId: ads.id[j],
        category: categories.id[ads.category[j]],
        surface: kSurfaces[block.surface[e]],
        event: kEvents[block.event[e]],
        ts: block.ts[e],
      });
    }
    skip = 0;
  }
  return out;
}

export function candidateOf(world: World, j: number): RankCandidate {
  const { ads, advertisers, categories } = world.entities;
  return {
    adId: ads.id[j],
    advertiserId: advertisers.id[ads.advertiser[j]],
    category: categories.id[ads.category[j]],
    bid: shortFloat32(ads.bid[j]),
    bidType: kBidTypes[ads.bidType[j]],
    features: { quality: shortFloat32(ads.quality[j]), creative: kCreatives[ads.creative[j]], price_tier: ads.priceTier[j] },
  };
}

/**
 * The stream of request `seed` on the world's day. Later days fork on the day, so `requests --day 8`
 * and `--day 9` draw different users, hours and candidates for the same seeds. Day 0 keeps the
 * stream it always had: the load-test bodies and the gate's reference batch are day-0 requests, and
 * benchmark results stay comparable with earlier ones only if those bodies do not change.
 */
export function requestRng(world: World, stream: string, seed: number): Rng {
  return world.day === 0 ? new Rng(world.config.seed, stream, seed) : new Rng(world.config.seed, stream, seed, 'day', world.day);
}

/** One `/v1/rank` body; deterministic in (world, options). */
export function generateRankRequest(world: World, options: RankRequestOptions): RankRequest {
  const surface = kSurfaces.indexOf(options.surface);
  if (surface < 0) throw new Error(`unknown surface '${options.surface}'`);
  const rng = requestRng(world, 'request', options.seed);
  const u = options.userIndex ?? pickUser(world, rng, options.historyLength);
  const { users } = world.entities;
  const active = world.sampler.activeAds;
  const wanted = Math.min(Math.max(1, options.candidates), active.length);
  const chosen = new Set<number>();
  for (let tries = 0; chosen.size < wanted && tries < wanted * 4; tries++) chosen.add(world.sampler.sample(u, surface, rng));
  while (chosen.size < wanted) chosen.add(active[rng.int(active.length)]);
  const body: RankRequest = {
    surface: options.surface,
    // The day is part of the id: the labeler keys its draws on (requestId, adId), so ids must not repeat across days.
    requestId: `w${world.config.seed}-d${world.day}-${options.seed}`,
    user: {
      id: users.id[u],
      features: {
        age_bucket: users.ageBucket[u],
        activity: shortFloat32(users.activity[u]),
        tenure_days: users.tenureDays[u],
        device: kDevices[users.device[u]],
      },
      history: userHistory(world, u, options.historyLength ?? kMaxRequestHistory),
    },
    context: { hour: sampleHour(world.entities, u, rng) },
    candidates: [...chosen].map((j) => candidateOf(world, j)),
  };
  if (options.topK !== undefined) body.topK = options.topK;
  return body;
}

export interface CandidateTruth {
  adId: number;
  pClick: number;
  /** P(conversion | click). */
  pConv: number;
}

/** Ground truth for every candidate of a body built from this world (unknown ids throw). */
export function scoreRequest(world: World, body: RankRequest): CandidateTruth[] {
  const u = world.userIndex.get(body.user.id);
  if (u === undefined) throw new Error(`user ${body.user.id} is not in this world`);
  const s = kSurfaces.indexOf(body.surface);
  const probs = new Float64Array(2);
  const view = world.truth.liveView;
  return body.candidates.map((c) => {
    const j = world.adIndex.get(c.adId);
    if (j === undefined) throw new Error(`ad ${c.adId} is not in this world`);
    world.truth.probabilities(view, u, j, s, body.context.hour, probs);
    return { adId: c.adId, pClick: probs[0], pConv: probs[1] };
  });
}
