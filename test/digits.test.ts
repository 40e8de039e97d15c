/** Scores leave the server with 9 significant digits, which identify a float32 exactly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nineSignificantDigits } from '../src/ranking/digits.js';

const significantDigits = (x: number) => x.toExponential().split('e')[0].replace(/[-.]/g, '').length;

/** Deterministic float32 values spread over every exponent in [1e-14, 1e15), plus the edges. */
function float32Samples(): number[] {
  let seed = 2026;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const out: number[] = [];
  for (let e = -14; e < 15; e++) {
    const p = Number(`1e${e}`);
    // Powers of ten and their float32 neighbours, where the exponent search may be one step off.
    out.push(Math.fround(p), Math.fround(p * (1 + 2 ** -23)), Math.fround(p * (1 - 2 ** -24)));
    for (let i = 0; i < 2000; i++) out.push(Math.fround(p * (1 + 9 * random())));
  }
  return out.filter((x) => x >= 1e-14 && x < 1e15);
}

test('a float32 rounded to 9 significant digits reads back as the same float32', () => {
  const samples = float32Samples();
  assert.ok(samples.length > 50_000);
  for (const x of samples) {
    const y = nineSignificantDigits(x);
    assert.equal(Math.fround(y), x, `${x} -> ${y}`);
    assert.ok(significantDigits(y) <= 9, `${x} -> ${y}: ${significantDigits(y)} digits`);
    // The shortest text of the result is what JSON.stringify prints.
    assert.equal(Math.fround(Number(JSON.stringify(y))), x);
  }
});

test('the result is toPrecision(9) of the input, doubles (eCPM) included', () => {
  let seed = 7;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 100_000; i++) {
    const x = 10 ** (random() * 28 - 14);
    const y = nineSignificantDigits(x);
    // They could differ only at an exact tie in the 10th digit, which these samples do not hit.
    assert.equal(y, Number(x.toPrecision(9)), String(x));
  }
  assert.equal(nineSignificantDigits(107.10350494924008), 107.103505);
  assert.equal(nineSignificantDigits(0.03454846143722534), 0.0345484614);
  assert.equal(nineSignificantDigits(1234567890123), 1234567890000);
});

test('zero, out-of-range magnitudes and non-finite values pass through unchanged', () => {
  for (const x of [0, -0, 1e-15, 3.4e-30, 1e15, 2e20, Infinity, -Infinity]) assert.equal(Object.is(nineSignificantDigits(x), x), true, String(x));
  assert.ok(Number.isNaN(nineSignificantDigits(NaN)));
  assert.equal(nineSignificantDigits(-0.03454846143722534), -0.0345484614);
});
