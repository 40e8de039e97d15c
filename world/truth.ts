/**
 * The ground-truth outcome model: P(click | user, ad, surface, hour) and P(conversion | click, ...).
 *
 *   logit_click = intercept[s]
 *     + wInterest[s] * (user interest . ad topic vector)           interests (drift moves them)
 *     + wDormant[s]  * [ad category is one of the user's dormant]   visible only in OLD history
 *     + sum_t cross[s][t] * surfaceZ[user][t]                      cross-surface (stories -> feed)
 *     + wCreative[s] * (deviceCreative[device][creative] + surfaceCreative[s][creative])
 *     + hourAmp[s] * cos(2 pi (hour - hourPeak[s]) / 24)           hour x surface
 *     + wQuality[s] * (quality - 0.57)
 *     + wPrice[s] * priceAge[price_tier][age_bucket]              price x age cross
 *     + advertiserBias + categoryTrend (trend drifts)
 *   logit_conv = convIntercept[s] + 0.7 dot + 0.9 dormant + 0.7 convProp + 1.5 (quality - 0.57)
 *     + 0.6 priceAge + bidTypeConv[bidType] + 0.3 [tenure > 365]
 *
 * Intercepts are solved numerically (calibrate) so that the mean P(click) over the world's own
 * impression distribution matches config.baseCtr per surface, and the click-weighted mean
 * P(conv | click) matches config.baseCvr.
 */
import { kSurfaces, type WorldConfig } from './config.js';
import type { Entities } from './entities.js';
import type { Rng } from './rng.js';
import { type AdSampler, sampleHour, sampleSurface } from './selection.js';

const S = kSurfaces.length;
const kWInterest = [1.0, 0.6, 0.8, 1.3];
const kWDormant = [1.5, 0.9, 1.1, 1.9];
/** cross[s][t]: how the user's latent propensity on surface t moves clicks on surface s. */
const kCross = [
  [0.15, 0.6, 0.0, 0.1],
  [0.0, 0.65, 0.2, 0.0],
  [0.1, 0.3, 0.5, 0.0],
  [0.3, 0.0, 0.0, 0.55],
];
const kWCreative = [0.5, 1.0, 1.2, 0.3];
/** [device][creative]: ios/android/web x image/video/carousel. */
const kDeviceCreative = [
  [0.0, 0.3, 0.1],
  [0.1, 0.1, 0.2],
  [0.2, -0.6, 0.1],
];
const kSurfaceCreative = [
  [0.0, 0.0, 0.1],
  [-0.1, 0.3, 0.0],
  [-0.4, 0.4, -0.2],
  [0.1, -0.2, 0.2],
];
const kHourAmp = [0.15, 0.25, 0.35, 0.2];
const kHourPeak = [12, 20, 22, 19];
const kWQuality = [1.2, 0.8, 0.8, 1.0];
const kWPrice = [0.5, 0.3, 0.3, 1.2];
const kBidTypeConv = [0.0, 0.5, -0.2];
const kQualityMean = 4 / 7;

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * What the truth reads that drift changes. The live view points at the world's current arrays;
 * a frozen view (snapshotView) keeps day-0 copies and knows only the ads that existed then
 * (later ads are scored with their category's topic vector).
 */
export interface TruthView {
  readonly interest: Float32Array;
  readonly trend: Float32Array;
  readonly knownAds: number;
}

export class Truth {
  readonly clickIntercept = new Float64Array(S);
  readonly convIntercept = new Float64Array(S);
  readonly #e: Entities;
  readonly #k: number;
  readonly #d: number;
  readonly #hourTable = new Float64Array(S * 24);
  readonly #priceAge = new Float64Array(5 * 7);

  constructor(entities: Entities, config: WorldConfig) {
    this.#e = entities;
    this.#k = entities.topics;
    this.#d = config.dormantPerUser;
    for (let s = 0; s < S; s++) {
      for (let h = 0; h < 24; h++) this.#hourTable[s * 24 + h] = kHourAmp[s] * Math.cos((2 * Math.PI * (h - kHourPeak[s])) / 24);
      this.clickIntercept[s] = Math.log(config.baseCtr[s] / (1 - config.baseCtr[s]));
      this.convIntercept[s] = Math.log(config.baseCvr[s] / (1 - config.baseCvr[s]));
    }
    for (let p = 0; p < 5; p++) for (let a = 0; a < 7; a++) this.#priceAge[p * 7 + a] = (-0.3 * (p - 2) * (3 - a)) / 3;
  }

  get liveView(): TruthView {
    return { interest: this.#e.users.interest, trend: this.#e.categories.trend, knownAds: Number.MAX_SAFE_INTEGER };
  }

  /** Copies of everything drift changes, as of now. */
  snapshotView(): TruthView {
    return { interest: this.#e.users.interest.slice(), trend: this.#e.categories.trend.slice(), knownAds: this.#e.ads.count };
  }

  /** User interest . ad topic vector under the given view. */
  dot(view: TruthView, u: number, j: number): number {
    const k = this.#k;
    const interest = view.interest;
    const uo = u * k;
    let dot = 0;
    if (j < view.knownAds) {
      const vec = this.#e.ads.vec;
      const ao = j * k;
      for (let t = 0; t < k; t++) dot += interest[uo + t] * vec[ao + t];
    } else {
      const vec = this.#e.categories.vec;
      const co = this.#e.ads.category[j] * k;
      for (let t = 0; t < k; t++) dot += interest[uo + t] * vec[co + t];
    }
    return dot;
  }

  dormantMatch(u: number, j: number): number {
    const cat = this.#e.ads.category[j];
    const dormant = this.#e.users.dormant;
    for (let i = u * this.#d, end = i + this.#d; i < end; i++) if (dormant[i] === cat) return 1;
    return 0;
  }

  /** Click logit without the surface intercept. */
  clickScore(view: TruthView, u: number, j: number, s: number, hour: number, dot: number, dormant: number): number {
    const { users, ads, advertisers } = this.#e;
    const zo = u * S;
    const cross = kCross[s];
    const creative = ads.creative[j];
    return (
      kWInterest[s] * dot +
      kWDormant[s] * dormant +
      cross[0] * users.surfaceZ[zo] +
      cross[1] * users.surfaceZ[zo + 1] +
      cross[2] * users.surfaceZ[zo + 2] +
      cross[3] * users.surfaceZ[zo + 3] +
      kWCreative[s] * (kDeviceCreative[users.device[u]][creative] + kSurfaceCreative[s][creative]) +
      this.#hourTable[s * 24 + hour] +
      kWQuality[s] * (ads.quality[j] - kQualityMean) +
      kWPrice[s] * this.#priceAge[ads.priceTier[j] * 7 + users.ageBucket[u]] +
      advertisers.bias[ads.advertiser[j]] +
      view.trend[ads.category[j]]
    );
  }

  /** Conversion-given-click logit without the surface intercept. */
  convScore(u: number, j: number, dot: number, dormant: number): number {
    const { users, ads } = this.#e;
    return (
      0.7 * dot +
      0.9 * dormant +
      0.7 * users.convProp[u] +
      1.5 * (ads.quality[j] - kQualityMean) +
      0.6 * this.#priceAge[ads.priceTier[j] * 7 + users.ageBucket[u]] +
      kBidTypeConv[ads.bidType[j]] +
      (users.tenureDays[u] > 365 ? 0.3 : 0)
    );
  }

  /** Ground-truth P(click) and P(conv | click) for one impression, written into out[0], out[1]. */
  probabilities(view: TruthView, u: number, j: number, s: number, hour: number, out: Float64Array): void {
    const dot = this.dot(view, u, j);
    const dormant = this.dormantMatch(u, j);
    out[0] = sigmoid(this.clickIntercept[s] + this.clickScore(view, u, j, s, hour, dot, dormant));
    out[1] = sigmoid(this.convIntercept[s] + this.convScore(u, j, dot, dormant));
  }

  /**
   * Solve the per-surface intercepts so base rates match the config on the world's impression
   * distribution (users by impression rate, surfaces by usage, ads by the sampler).
   */
  calibrate(config: WorldConfig, sampler: AdSampler, rng: Rng, draws = 100_000): void {
    const { users } = this.#e;
    const cum = new Float64Array(users.count);
    let total = 0;
    for (let u = 0; u < users.count; u++) {
      total += users.impRate[u];
      cum[u] = total;
    }
    const clickScores: number[][] = Array.from({ length: S }, () => []);
    const convScores: number[][] = Array.from({ length: S }, () => []);
    const view = this.liveView;
    for (let n = 0; n < draws; n++) {
      const u = rng.pickCumulative(cum);
      const s = sampleSurface(this.#e, u, rng, S);
      const j = sampler.sample(u, s, rng);
      const hour = sampleHour(this.#e, u, rng);
      const dot = this.dot(view, u, j);
      const dormant = this.dormantMatch(u, j);
      clickScores[s].push(this.clickScore(view, u, j, s, hour, dot, dormant));
      convScores[s].push(this.convScore(u, j, dot, dormant));
    }
    for (let s = 0; s < S; s++) {
      const xs = Float64Array.from(clickScores[s]);
      if (xs.length === 0) continue;
      const b = solveIntercept(xs, null, config.baseCtr[s]);
      this.clickIntercept[s] = b;
      const weights = xs.map((x) => sigmoid(b + x));
      this.convIntercept[s] = solveIntercept(Float64Array.from(convScores[s]), weights, config.baseCvr[s]);
    }
  }
}

/**
 * Solve sum_i w_i sigmoid(b + x_i) / sum_i w_i = target for b (Newton's method from the logit of
 * the target, safeguarded by a shrinking bracket; the left side increases with b).
 */
export function solveIntercept(xs: Float64Array, weights: Float64Array | null, target: number): number {
  let wsum = 0;
  for (let i = 0; i < xs.length; i++) wsum += weights ? weights[i] : 1;
  let lo = -30;
  let hi = 30;
  let b = Math.log(target / (1 - target));
  for (let iter = 0; iter < 100; iter++) {
    let f = 0;
    let df = 0;
    for (let i = 0; i < xs.length; i++) {
      const p = sigmoid(b + xs[i]);
      const w = weights ? weights[i] : 1;
      f += w * p;
      df += w * p * (1 - p);
    }
    f = f / wsum - target;
    df /= wsum;
    if (Math.abs(f) < target * 1e-7) return b;
    if (f < 0) lo = b;
    else hi = b;
    let next = b - f / df;
    if (!(next > lo && next < hi)) next = (lo + hi) / 2;
    if (Math.abs(next - b) < 1e-10) return next;
    b = next;
  }
  return b;
}
