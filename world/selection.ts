/**
 * Which ads a user is shown (the "delivery system" of the world): part targeted at the user's top
 * categories, part following inventory weights, with surface-specific creative preferences
 * (reels wants video). Rebuilt once a day, after drift changes interests and inventory.
 */
import type { WorldConfig } from './config.js';
import type { Entities } from './entities.js';
import type { Rng } from './rng.js';

const kTopCategories = 3;
const kSurfaceReels = 2;
const kSurfaceStories = 1;
const kCreativeVideo = 1;
const kCreativeCarousel = 2;

export class AdSampler {
  readonly #entities: Entities;
  readonly #targetedShare: number;
  readonly #dormantPerUser: number;
  #catCum = new Float64Array(0);
  #catOffsets = new Int32Array(0);
  #catAds = new Int32Array(0);
  #activeAds = new Int32Array(0);
  #userTop = new Int16Array(0);

  constructor(entities: Entities, config: WorldConfig) {
    this.#entities = entities;
    this.#targetedShare = config.targetedShare;
    this.#dormantPerUser = config.dormantPerUser;
    this.rebuild();
  }

  /** Active ad indices (for candidate sets). */
  get activeAds(): Int32Array {
    return this.#activeAds;
  }

  /** Re-index the active inventory by category and recompute every user's top categories. */
  rebuild(): void {
    const { ads, categories, users, topics: k } = this.#entities;
    const c = categories.count;
    const counts = new Int32Array(c);
    let active = 0;
    for (let j = 0; j < ads.count; j++) {
      if (ads.active[j]) {
        counts[ads.category[j]]++;
        active++;
      }
    }
    const offsets = new Int32Array(c + 1);
    for (let i = 0; i < c; i++) offsets[i + 1] = offsets[i] + counts[i];
    const fill = offsets.slice(0, c);
    const catAds = new Int32Array(active);
    const activeAds = new Int32Array(active);
    let a = 0;
    for (let j = 0; j < ads.count; j++) {
      if (ads.active[j]) {
        catAds[fill[ads.category[j]]++] = j;
        activeAds[a++] = j;
      }
    }
    const catCum = new Float64Array(c);
    let total = 0;
    for (let i = 0; i < c; i++) {
      total += counts[i];
      catCum[i] = total;
    }
    const userTop = new Int16Array(users.count * kTopCategories);
    const scores = new Float64Array(c);
    for (let u = 0; u < users.count; u++) {
      const uo = u * k;
      for (let i = 0; i < c; i++) {
        if (counts[i] === 0) {
          scores[i] = -Infinity;
          continue;
        }
        let dot = 0;
        const co = i * k;
        for (let t = 0; t < k; t++) dot += users.interest[uo + t] * categories.vec[co + t];
        scores[i] = dot;
      }
      for (let r = 0; r < kTopCategories; r++) {
        let best = 0;
        for (let i = 1; i < c; i++) if (scores[i] > scores[best]) best = i;
        userTop[u * kTopCategories + r] = best;
        scores[best] = -Infinity;
      }
    }
    this.#catCum = catCum;
    this.#catOffsets = offsets;
    this.#catAds = catAds;
    this.#activeAds = activeAds;
    this.#userTop = userTop;
  }

  #adInCategory(cat: number, rng: Rng): number {
    const from = this.#catOffsets[cat];
    const len = this.#catOffsets[cat + 1] - from;
    if (len === 0) return -1;
    return this.#catAds[from + rng.int(len)];
  }

  /**
   * One shown ad for user u on surface s. `dormantBias` is the chance the ad comes from one of
   * the user's dormant categories (the seeded old history uses it; live days use 0).
   */
  sample(u: number, surface: number, rng: Rng, dormantBias = 0): number {
    let cat: number;
    if (dormantBias > 0 && rng.next() < dormantBias) {
      cat = this.#entities.users.dormant[u * this.#dormantPerUser + rng.int(this.#dormantPerUser)];
    } else if (rng.next() < this.#targetedShare) {
      cat = this.#userTop[u * kTopCategories + rng.int(kTopCategories)];
    } else {
      cat = rng.pickCumulative(this.#catCum);
    }
    let j = this.#adInCategory(cat, rng);
    if (j < 0) j = this.#adInCategory(rng.pickCumulative(this.#catCum), rng);
    if (j < 0) j = this.#activeAds[rng.int(this.#activeAds.length)];
    const creative = this.#entities.ads.creative[j];
    const resample =
      (surface === kSurfaceReels && creative !== kCreativeVideo && rng.next() < 0.6) ||
      (surface === kSurfaceStories && creative === kCreativeCarousel && rng.next() < 0.4);
    if (resample) {
      const again = this.#adInCategory(this.#entities.ads.category[j], rng);
      if (again >= 0) j = again;
    }
    return j;
  }
}

/** Hour of day a user sees an impression: around the user's peak hour, sometimes anywhere. */
export function sampleHour(entities: Entities, u: number, rng: Rng): number {
  if (rng.next() < 0.2) return rng.int(24);
  return (((entities.users.peakHour[u] + Math.round(3.5 * rng.normal())) % 24) + 24) % 24;
}

/** Surface of one impression of user u, from the user's usage mix. */
export function sampleSurface(entities: Entities, u: number, rng: Rng, surfaces: number): number {
  const cum = entities.users.surfaceCum;
  const o = u * surfaces;
  const x = rng.next() * cum[o + surfaces - 1];
  for (let t = 0; t < surfaces - 1; t++) if (x < cum[o + t]) return t;
  return surfaces - 1;
}
