/**
 * Seeded pseudo-random numbers for the synthetic world: sfc32 (Chris Doty-Humphrey's small fast
 * counting generator, 128-bit state, 32-bit output) plus the samplers the world needs.
 * Everything in world/ draws from an Rng forked from the run's seed, so the same seed gives the
 * same bytes.
 */
import { fmix32 as mix32, hashString } from '../src/features/id-hash.js';

const kInv32 = 1 / 4294967296;

/** Combine a seed with any number of integer / string keys into one 32-bit seed. */
export function deriveSeed(seed: number, ...keys: Array<number | string>): number {
  let h = mix32((seed >>> 0) ^ 0x2545f491) ^ Math.floor(seed / 4294967296);
  for (const key of keys) {
    const k = typeof key === 'string' ? hashString(key) : mix32((key >>> 0) ^ Math.floor(key / 4294967296));
    h = mix32((h ^ k) + 0x9e3779b9);
  }
  return h >>> 0;
}

export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spareNormal = NaN;
  readonly #seed: number;

  constructor(seed: number, ...keys: Array<number | string>) {
    const s = deriveSeed(seed, ...keys);
    this.#seed = s;
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = s;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  /** A new independent stream for the named sub-task (depends only on this stream's seed and the keys). */
  fork(...keys: Array<number | string>): Rng {
    return new Rng(this.#seed, ...keys);
  }

  nextU32(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = ((c << 21) | (c >>> 11)) + t | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() * kInv32;
  }

  /** Uniform in (0, 1): safe for logs. */
  nextOpen(): number {
    return (this.nextU32() + 0.5) * kInv32;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  bernoulli(p: number): boolean {
    return this.next() < p;
  }

  /** Standard normal (Marsaglia polar method, caches the second value). */
  normal(): number {
    if (!Number.isNaN(this.#spareNormal)) {
      const v = this.#spareNormal;
      this.#spareNormal = NaN;
      return v;
    }
    let u = 0;
    let v = 0;
    let s = 0;
    do {
      u = 2 * this.next() - 1;
      v = 2 * this.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.#spareNormal = v * f;
    return u * f;
  }

  lognormal(mu: number, sigma: number): number {
    return Math.exp(mu + sigma * this.normal());
  }

  exponential(rate = 1): number {
    return -Math.log(this.nextOpen()) / rate;
  }

  /** Pareto with scale xm and shape alpha (heavy tail for alpha near 1). */
  pareto(xm: number, alpha: number): number {
    return xm / Math.pow(this.nextOpen(), 1 / alpha);
  }

  /** Gamma(shape, 1) by Marsaglia-Tsang. */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(this.nextOpen(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x = 0;
      let v = 0;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.nextOpen();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  beta(a: number, b: number): number {
    const x = this.gamma(a);
    return x / (x + this.gamma(b));
  }

  /** Poisson: Knuth for small means, normal approximation (rounded, >= 0) for large ones. */
  poisson(mean: number): number {
    if (mean <= 0) return 0;
    if (mean < 30) {
      const limit = Math.exp(-mean);
      let k = 0;
      let p = this.next();
      while (p > limit) {
        k++;
        p *= this.next();
      }
      return k;
    }
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * this.normal()));
  }

  /** Index drawn from a cumulative weight table (last entry = total). */
  pickCumulative(cumulative: ArrayLike<number>): number {
    const x = this.next() * cumulative[cumulative.length - 1];
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumulative[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
