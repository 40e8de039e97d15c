/**
 * Drift between simulated days: user interests follow an AR(1) walk toward fresh draws from the
 * prior (correlation config.interestRho per day), category popularity trends random-walk
 * (config.categoryTrendStep, re-centred so base rates stay put), and a config.adTurnover fraction of
 * the active ads is retired and replaced by new ones. A model (or an oracle) frozen at day 0
 * therefore scores later days worse.
 */
import { addAd, drawInterest, kInterestPriorMean } from './entities.js';
import type { Rng } from './rng.js';
import type { World } from './world.js';

export function advanceDay(world: World, rng: Rng): void {
  const { config, entities, sampler } = world;
  const day = ++world.day;
  const { users, categories, ads, topics: k } = entities;
  const rho = config.interestRho;
  if (rho < 1) {
    // AR(1) around the prior mean: mean and variance of the interest distribution stay put.
    const innovation = Math.sqrt(1 - rho * rho);
    const mu = kInterestPriorMean / k;
    const fresh = new Float32Array(k);
    for (let u = 0; u < users.count; u++) {
      drawInterest(rng, fresh, 0, k);
      const o = u * k;
      for (let t = 0; t < k; t++) users.interest[o + t] = mu + rho * (users.interest[o + t] - mu) + innovation * (fresh[t] - mu);
    }
  }
  // Trends random-walk; re-centre on log-mean-exp so the spread does not lift the mean click rate.
  let meanExp = 0;
  for (let c = 0; c < categories.count; c++) {
    categories.trend[c] += config.categoryTrendStep * rng.normal();
    meanExp += Math.exp(categories.trend[c]);
  }
  const shift = Math.log(meanExp / categories.count);
  for (let c = 0; c < categories.count; c++) categories.trend[c] -= shift;
  if (config.adTurnover > 0) {
    const active = sampler.activeAds;
    const turnover = Math.min(Math.round(active.length * config.adTurnover), ads.capacity - ads.count);
    let retired = 0;
    for (let tries = 0; retired < turnover && tries < turnover * 20; tries++) {
      const j = active[rng.int(active.length)];
      if (ads.active[j]) {
        ads.active[j] = 0;
        retired++;
      }
    }
    for (let i = 0; i < retired; i++) addAd(entities, rng, day);
  }
  sampler.rebuild();
}
