/**
 * The manifest's calibration (docs/CONTRACTS.md): the schema allows `platt` with a slope and an
 * intercept, and the server served such a version's raw output as if it were calibrated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sampleRequest, startApp } from './helpers/app.js';
import { defaultRollout, kTwoVersionsEach, makeRepo, writeVersion } from './helpers/fixture-repo.js';
import { calibrate } from '../src/models/probabilities.js';

function setCalibration(dir: string, calibration: Record<string, unknown>): void {
  const file = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8'));
  manifest.calibration = calibration;
  writeFileSync(file, JSON.stringify(manifest, null, 2));
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const logit = (p: number) => Math.log(p / (1 - p));

test('calibrate: platt is sigmoid(slope * logit(p) + intercept); identity leaves the scores', () => {
  const raw = Float32Array.from([0.01, 0.2, 0.5, 0.9, 0, 1]);
  assert.deepEqual(calibrate(Float32Array.from(raw), { method: 'identity' }), raw);
  const out = calibrate(Float32Array.from(raw), { method: 'platt', slope: 0.8, intercept: -0.5 });
  for (const [i, p] of [0.01, 0.2, 0.5, 0.9].entries()) assert.ok(Math.abs(out[i] - sigmoid(0.8 * logit(p) - 0.5)) < 1e-6, `${p} -> ${out[i]}`);
  assert.ok(out[4] > 0 && out[4] < 1e-4 && out[5] < 1 && out[5] > 1 - 1e-3, 'the ends stay finite probabilities');
  const flat = calibrate(Float32Array.from(raw), { method: 'platt', slope: 0, intercept: 1 });
  for (const v of flat) assert.ok(Math.abs(v - sigmoid(1)) < 1e-6);
});

test('a version whose manifest says platt is served calibrated; an incomplete or wild calibration does not reach traffic', async (t) => {
  const repo = makeRepo([...kTwoVersionsEach, { name: 'feed-ctr', version: 3, variant: 'v1' }], defaultRollout());
  // Versions 1-4 are the same weights; 2 declares a Platt calibration, 3 an incomplete one, and 4 (below)
  // one that moves every served logit by +4 (the gate's distribution check read the raw output and
  // passed it).
  setCalibration(path.join(repo.dir, 'feed-ctr', '2'), { method: 'platt', slope: 1.2, intercept: 0.7 });
  setCalibration(path.join(repo.dir, 'feed-ctr', '3'), { method: 'platt', slope: 1.2 });
  // 5: the same wild calibration on a first load, with no serving version to compare with.
  const alone = makeRepo([{ name: 'feed-ctr', version: 1, variant: 'v1' }, { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' }], defaultRollout());
  setCalibration(path.join(alone.dir, 'feed-ctr', '1'), { method: 'platt', slope: 1, intercept: 20 });
  const first = await startApp(alone.dir);
  t.after(async () => {
    await first.close();
    alone.cleanup();
  });
  assert.equal(first.ranker.registry.get('feed-ctr', 1)!.state, 'failed');
  assert.match(first.ranker.registry.get('feed-ctr', 1)!.reason ?? '', /score-spread: 1 distinct served scores/);
  const app = await startApp(repo.dir, { keepVersions: 5 });
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const v3 = app.ranker.registry.get('feed-ctr', 3)!;
  assert.equal(v3.state, 'failed');
  assert.match(v3.reason ?? '', /calibration: method platt needs slope and intercept/);
  // A slope that would reverse the model's order is refused outright.
  setCalibration(writeVersion(repo.dir, { name: 'feed-ctr', version: 5, variant: 'v1' }), { method: 'platt', slope: -1, intercept: 0 });
  await app.ranker.loader.scan();
  assert.match(app.ranker.registry.get('feed-ctr', 5)!.reason ?? '', /calibration\/slope must be positive, got -1/);
  // Published while version 1 serves, so the gate compares it with what is served.
  setCalibration(writeVersion(repo.dir, { name: 'feed-ctr', version: 4, variant: 'v1' }), { method: 'platt', slope: 1, intercept: 4 });
  await app.ranker.loader.scan();
  const v4 = app.ranker.registry.get('feed-ctr', 4)!;
  assert.equal(v4.state, 'failed');
  assert.match(v4.reason ?? '', /failed the validation gate: distribution: mean logit shift/);
  const body = sampleRequest(30, 20, 9);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const score = async (version: number) => {
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...body, pin: { 'feed-ctr': version } } });
    assert.equal(res.statusCode, 200, res.body);
    return new Map<number, number>(res.json().ranked.map((r: { adId: number; pctr: number }) => [r.adId, r.pctr]));
  };
  const raw = await score(1);
  const calibrated = await score(2);
  assert.equal(calibrated.size, raw.size);
  for (const [adId, p] of raw) {
    const expected = sigmoid(1.2 * logit(p) + 0.7);
    assert.ok(Math.abs(calibrated.get(adId)! - expected) < 1e-5, `ad ${adId}: ${calibrated.get(adId)} against ${expected}`);
  }
});
