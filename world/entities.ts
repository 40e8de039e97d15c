/**
 * Users, ads, advertisers and categories of the synthetic world, as columns of typed arrays
 * (struct-of-arrays: no per-entity objects, so millions of impressions cost no allocation).
 * Latent attributes live in a K-topic space: categories and ads have unit topic vectors, users
 * an interest vector; the ground truth (truth.ts) scores their dot product.
 */
import { kSurfaces, type WorldConfig } from './config.js';
import { Rng } from './rng.js';

/** Id spaces: users above 2^32 (exercises the high half of the id hash), ads and advertisers below. */
export const kUserIdBase = 10_000_000_000;
export const kAdIdBase = 1_000_000;
export const kAdvertiserIdBase = 50_000;
export const kCategoryIdBase = 1;

const kAgeProbs = [0.08, 0.22, 0.24, 0.18, 0.13, 0.09, 0.06];
const kDeviceProbs = [0.45, 0.45, 0.1];
const kCreativeProbs = [0.45, 0.35, 0.2];
const kBidTypeProbs = [0.55, 0.25, 0.2];
const kSurfaceUsage = [0.45, 0.2, 0.2, 0.15];
/** Users' own latent click propensity per surface: a shared factor plus a surface-specific one. */
const kSurfaceShared = 0.6;

export interface Categories {
  readonly count: number;
  readonly id: Float64Array;
  /** count * K unit topic vectors. */
  readonly vec: Float32Array;
  /** Popularity trend in logit units; random-walks over days (drift.ts). */
  readonly trend: Float32Array;
  /** Mean price tier of the category's ads. */
  readonly priceMean: Float32Array;
}

export interface Advertisers {
  readonly count: number;
  readonly id: Float64Array;
  /** Brand effect on click logit. */
  readonly bias: Float32Array;
  readonly mainCategory: Int16Array;
  /** Cumulative size weights (heavy-tailed: few big advertisers). */
  readonly cumWeight: Float64Array;
}

export interface Ads {
  /** Ads created so far (initial inventory plus those introduced by drift); indices < count are valid. */
  count: number;
  readonly capacity: number;
  readonly id: Float64Array;
  readonly advertiser: Int32Array;
  readonly category: Int16Array;
  readonly vec: Float32Array;
  readonly quality: Float32Array;
  readonly creative: Uint8Array;
  readonly priceTier: Uint8Array;
  readonly bidType: Uint8Array;
  readonly bid: Float32Array;
  /** 1 while the ad is in the inventory. */
  readonly active: Uint8Array;
  readonly bornDay: Int16Array;
}

export interface Users {
  readonly count: number;
  readonly id: Float64Array;
  readonly ageBucket: Uint8Array;
  readonly activity: Float32Array;
  readonly tenureDays: Float32Array;
  readonly device: Uint8Array;
  /** count * K interest vectors (drift random-walks them). */
  readonly interest: Float32Array;
  /** count * D dormant categories: interests visible only in old history. */
  readonly dormant: Int16Array;
  /** count * S latent click propensity per surface (what the user's behaviour on that surface reveals). */
  readonly surfaceZ: Float32Array;
  /** Latent conversion propensity. */
  readonly convProp: Float32Array;
  /** count * S cumulative surface usage (which surfaces the user visits). */
  readonly surfaceCum: Float32Array;
  readonly peakHour: Uint8Array;
  /** Expected impressions per simulated day. */
  readonly impRate: Float32Array;
}

export interface Entities {
  readonly topics: number;
  readonly categories: Categories;
  readonly advertisers: Advertisers;
  readonly ads: Ads;
  readonly users: Users;
}

function pick(rng: Rng, probs: readonly number[]): number {
  let x = rng.next();
  for (let i = 0; i < probs.length - 1; i++) {
    x -= probs[i];
    if (x < 0) return i;
  }
  return probs.length - 1;
}

function normalize(vec: Float32Array, offset: number, k: number): void {
  let norm = 0;
  for (let t = 0; t < k; t++) norm += vec[offset + t] * vec[offset + t];
  norm = Math.sqrt(norm) || 1;
  for (let t = 0; t < k; t++) vec[offset + t] /= norm;
}

function createCategories(config: WorldConfig, rng: Rng): Categories {
  const c = config.categories;
  const k = config.topics;
  const vec = new Float32Array(c * k);
  const priceMean = new Float32Array(c);
  const id = new Float64Array(c);
  for (let i = 0; i < c; i++) {
    id[i] = kCategoryIdBase + i;
    const main = i % k;
    const second = (main + 1 + rng.int(k - 1)) % k;
    for (let t = 0; t < k; t++) vec[i * k + t] = 0.12 * rng.normal();
    vec[i * k + main] += 1;
    vec[i * k + second] += 0.5;
    normalize(vec, i * k, k);
    priceMean[i] = rng.uniform(0.5, 3.5);
  }
  return { count: c, id, vec, trend: new Float32Array(c), priceMean };
}

function createAdvertisers(config: WorldConfig, rng: Rng): Advertisers {
  const n = config.advertisers;
  const id = new Float64Array(n);
  const bias = new Float32Array(n);
  const mainCategory = new Int16Array(n);
  const cumWeight = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    id[i] = kAdvertiserIdBase + i;
    bias[i] = 0.3 * rng.normal();
    mainCategory[i] = rng.int(config.categories);
    total += Math.min(rng.pareto(1, 1.3), 200);
    cumWeight[i] = total;
  }
  return { count: n, id, bias, mainCategory, cumWeight };
}

function allocateAds(capacity: number, k: number): Ads {
  return {
    count: 0,
    capacity,
    id: new Float64Array(capacity),
    advertiser: new Int32Array(capacity),
    category: new Int16Array(capacity),
    vec: new Float32Array(capacity * k),
    quality: new Float32Array(capacity),
    creative: new Uint8Array(capacity),
    priceTier: new Uint8Array(capacity),
    bidType: new Uint8Array(capacity),
    bid: new Float32Array(capacity),
    active: new Uint8Array(capacity),
    bornDay: new Int16Array(capacity),
  };
}

/** Create one new ad (initial inventory or drift's new arrivals); returns its index. */
export function addAd(entities: Entities, rng: Rng, day: number): number {
  const { ads, advertisers, categories, topics: k } = entities;
  if (ads.count >= ads.capacity) throw new Error(`world: ad capacity ${ads.capacity} exhausted`);
  const j = ads.count++;
  const adv = rng.pickCumulative(advertisers.cumWeight);
  const cat = rng.bernoulli(0.8) ? advertisers.mainCategory[adv] : rng.int(categories.count);
  ads.id[j] = kAdIdBase + j;
  ads.advertiser[j] = adv;
  ads.category[j] = cat;
  for (let t = 0; t < k; t++) ads.vec[j * k + t] = categories.vec[cat * k + t] + 0.35 * rng.normal();
  normalize(ads.vec, j * k, k);
  ads.quality[j] = rng.beta(4, 3);
  ads.creative[j] = pick(rng, kCreativeProbs);
  ads.priceTier[j] = Math.max(0, Math.min(4, Math.round(categories.priceMean[cat] + 0.8 * rng.normal())));
  const bidType = pick(rng, kBidTypeProbs);
  ads.bidType[j] = bidType;
  const bid = bidType === 0 ? rng.lognormal(Math.log(0.8), 0.5) : bidType === 1 ? rng.lognormal(Math.log(20), 0.6) : rng.lognormal(Math.log(5), 0.5);
  ads.bid[j] = Math.round(bid * 100) / 100;
  ads.active[j] = 1;
  ads.bornDay[j] = day;
  return j;
}

/** Sum over topics of the prior's mean interest (the two boosted topics): per topic, divide by K. */
export const kInterestPriorMean = 1.3 + 0.8;

/** Draw a user's interest vector from the prior (also used by drift for the innovation term). */
export function drawInterest(rng: Rng, out: Float32Array, offset: number, k: number): void {
  for (let t = 0; t < k; t++) out[offset + t] = 0.5 * rng.normal();
  const strong = rng.int(k);
  const second = (strong + 1 + rng.int(k - 1)) % k;
  out[offset + strong] += 1.3;
  out[offset + second] += 0.8;
}

function createUsers(config: WorldConfig, rng: Rng): Users {
  const n = config.users;
  const k = config.topics;
  const s = kSurfaces.length;
  const d = config.dormantPerUser;
  const users: Users = {
    count: n,
    id: new Float64Array(n),
    ageBucket: new Uint8Array(n),
    activity: new Float32Array(n),
    tenureDays: new Float32Array(n),
    device: new Uint8Array(n),
    interest: new Float32Array(n * k),
    dormant: new Int16Array(n * d),
    surfaceZ: new Float32Array(n * s),
    convProp: new Float32Array(n),
    surfaceCum: new Float32Array(n * s),
    peakHour: new Uint8Array(n),
    impRate: new Float32Array(n),
  };
  const kPeaks = [8, 13, 21];
  let rateSum = 0;
  for (let i = 0; i < n; i++) {
    users.id[i] = kUserIdBase + i;
    users.ageBucket[i] = pick(rng, kAgeProbs);
    users.device[i] = pick(rng, kDeviceProbs);
    const activity = rng.beta(2, 4);
    users.activity[i] = activity;
    users.tenureDays[i] = Math.min(4000, Math.round(rng.exponential(1 / 500)));
    drawInterest(rng, users.interest, i * k, k);
    for (let j = 0; j < d; j++) {
      let cat = 0;
      let tries = 0;
      do {
        cat = rng.int(config.categories);
        tries++;
      } while (tries < 20 && users.dormant.subarray(i * d, i * d + j).includes(cat));
      users.dormant[i * d + j] = cat;
    }
    const shared = rng.normal();
    let cum = 0;
    for (let t = 0; t < s; t++) {
      users.surfaceZ[i * s + t] = kSurfaceShared * shared + 0.8 * rng.normal();
      cum += kSurfaceUsage[t] * rng.gamma(1.5);
      users.surfaceCum[i * s + t] = cum;
    }
    users.convProp[i] = rng.normal();
    users.peakHour[i] = (kPeaks[rng.int(3)] + Math.round(2 * rng.normal()) + 24) % 24;
    const rate = 0.1 + Math.pow(activity, 1.5);
    users.impRate[i] = rate;
    rateSum += rate;
  }
  const scale = (config.impressionsPerUserDay * n) / rateSum;
  for (let i = 0; i < n; i++) users.impRate[i] *= scale;
  return users;
}

/** Build every entity from the config; ad capacity leaves room for drift's new ads. */
export function createEntities(config: WorldConfig, rng: Rng): Entities {
  const categories = createCategories(config, rng.fork('categories'));
  const advertisers = createAdvertisers(config, rng.fork('advertisers'));
  const newAdsPerDay = Math.ceil(config.ads * config.adTurnover);
  const ads = allocateAds(config.ads + newAdsPerDay * Math.max(config.days, 1) + 16, config.topics);
  const entities: Entities = { topics: config.topics, categories, advertisers, ads, users: createUsers(config, rng.fork('users')) };
  const adRng = rng.fork('ads');
  for (let j = 0; j < config.ads; j++) addAd(entities, adRng, 0);
  return entities;
}
