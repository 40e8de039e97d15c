/** What a student's output must be: a probability. Shared by the load-time gate and serving. */

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
