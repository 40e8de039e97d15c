import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdmissionController } from '../src/routes/admission.js';

test('shedding rises with sustained event-loop lag and decays when the loop has slack', () => {
  let draw = 0.5;
  const admission = new AdmissionController({ targetLagMs: 20, random: () => draw });
  for (let i = 0; i < 20; i++) admission.observe(2, 0.5);
  assert.equal(admission.shedProbability, 0, 'no shedding at low lag');
  assert.equal(admission.admit(), true);
  admission.observe(40, 1); // one moderate spike is smoothed away
  assert.equal(admission.shedProbability, 0);
  for (let i = 0; i < 10; i++) admission.observe(80, 1);
  assert.ok(admission.shedProbability > 0.5, `sustained overload sheds (${admission.shedProbability})`);
  assert.ok(admission.shedProbability <= 0.98, 'never sheds everything');
  draw = 0.3;
  assert.equal(admission.admit(), false);
  for (let i = 0; i < 100; i++) admission.observe(1, 0.4);
  assert.equal(admission.shedProbability, 0, 'recovers');
  for (let i = 0; i < 20; i++) admission.observe(80, 0.6);
  assert.equal(admission.shedProbability, 0, 'lag on a loop with slack (bursty parsing) does not shed');
});

test('admitted requests in progress are bounded', () => {
  const admission = new AdmissionController({ targetLagMs: 20, maxInflight: 2 });
  assert.equal(admission.admit(), true);
  assert.equal(admission.admit(), true);
  assert.equal(admission.admit(), false, 'third concurrent request refused');
  admission.done();
  assert.equal(admission.admit(), true, 'a finished request frees a place');
  assert.equal(admission.inflight, 2);
});
