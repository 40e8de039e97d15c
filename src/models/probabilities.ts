/** What a student's output must be: a probability. Shared by the load-time gate and serving. */
import type { Manifest } from './manifest.js';

/** How many values are NaN, infinite or outside [0, 1]. */
export function countInvalidProbabilities(values: ArrayLike<number>): number {
  let bad = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // Written so that NaN fails too: every comparison with NaN is false.
    if (!(v >= 0 && v <= 1)) bad++;
  }
  return bad;
}

/**
 * Apply the manifest's calibration to a version's scores, in place: `platt` is
 * sigmoid(slope * logit(p) + intercept), `identity` leaves them. Served scores are calibrated; golden
 * outputs and OIP infer outputs are the model's own (docs/CONTRACTS.md).
 */
export function calibrate(scores: Float32Array, calibration: Manifest['calibration']): Float32Array {
  if (calibration.method !== 'platt') return scores;
  const slope = calibration.slope!;
  const intercept = calibration.intercept!;
  for (let i = 0; i < scores.length; i++) scores[i] = 1 / (1 + Math.exp(-(slope * logit(scores[i]) + intercept)));
  return scores;
}

/** log(p / (1 - p)), p clamped to [1e-7, 1 - 1e-7] first so that 0 and 1 keep a finite logit. */
export function logit(p: number): number {
  const q = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
  return Math.log(q / (1 - q));
}

/** The mean of `logit` over `values` (0 for none): score distributions are compared in logit space. */
export function meanLogit(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += logit(values[i]);
  return sum / Math.max(1, values.length);
}
