/**
 * Scores leave the server rounded to 9 significant digits. The models answer in float32, whose
 * value 9 significant digits identify exactly (`Math.fround` of the printed number gives the
 * model's float32 back); `JSON.stringify` of the float32 widened to a double prints up to 17 digits,
 * of which the last eight carry no information. Rounding cuts a 500-candidate answer from ~43 to
 * ~35 KB and its serialization by ~15%. eCPM, a double product of float32 inputs, gets the same 9.
 */

/** 10^(i - 24) for i in 0..48. The scales below use only 10^0..10^22, which doubles hold exactly. */
const kPowersOfTen = Array.from({ length: 49 }, (_, i) => Number(`1e${i - 24}`));
const kOffset = 24;

/**
 * `x` rounded to 9 significant digits. Values outside [1e-14, 1e15) in magnitude, zero and
 * non-finite values are returned unchanged, and so printed in full.
 */
export function nineSignificantDigits(x: number): number {
  const a = x < 0 ? -x : x;
  if (!(a >= 1e-14 && a < 1e15)) return x;
  // e with 10^e <= a < 10^(e+1), up to one step off at exact powers of ten, where the result
  // then has 8 or 10 digits: 8 still identify a float32 there (the digit's step is 1e-8 of a,
  // a float32's half step at least 3e-8 of it).
  let e = 0;
  if (a >= 1) {
    while (a >= kPowersOfTen[kOffset + e + 1]) e++;
  } else {
    while (a < kPowersOfTen[kOffset + e]) e--;
  }
  const exponent = 8 - e;
  // Scale by an integer power of ten (exact for 10^0..10^22, which is why the range stops at 1e-14):
  // the result is then the double nearest to a 9-digit decimal (toPrecision(9)'s, but for ties).
  if (exponent >= 0) {
    const scale = kPowersOfTen[kOffset + exponent];
    return Math.round(x * scale) / scale;
  }
  const scale = kPowersOfTen[kOffset - exponent];
  return Math.round(x / scale) * scale;
}
