/** Offline metrics for oracle figures: ROC AUC (sort-based, ties count half) and log-loss. */

/** ROC AUC of scores against 0/1 labels; NaN when one class is missing. */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  let nPos = 0;
  for (let i = 0; i < labels.length; i++) nPos += labels[i] ? 1 : 0;
  const nNeg = labels.length - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  const pos = new Float64Array(nPos);
  const neg = new Float64Array(nNeg);
  let p = 0;
  let q = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]) pos[p++] = scores[i];
    else neg[q++] = scores[i];
  }
  pos.sort();
  neg.sort();
  let lt = 0;
  let le = 0;
  let acc = 0;
  for (let i = 0; i < nPos; i++) {
    const v = pos[i];
    while (lt < nNeg && neg[lt] < v) lt++;
    if (le < lt) le = lt;
    while (le < nNeg && neg[le] <= v) le++;
    acc += lt + 0.5 * (le - lt);
  }
  return acc / (nPos * nNeg);
}

/** Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]. */
export function logLoss(probs: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (labels.length === 0) return NaN;
  let acc = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = Math.min(1 - 1e-7, Math.max(1e-7, probs[i]));
    acc -= labels[i] ? Math.log(p) : Math.log(1 - p);
  }
  return acc / labels.length;
}

/** Elements of values where mask is 1. */
export function select<T extends Float32Array | Uint8Array>(values: T, mask: Uint8Array): T {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  const out = new (values.constructor as new (n: number) => T)(n);
  let k = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[k++] = values[i];
  return out;
}
