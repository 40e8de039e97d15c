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

test('a request that finds every place taken waits for one, first come first served, and a finished request hands its place over', async () => {
  const admission = new AdmissionController({ targetLagMs: 20, maxInflight: 1, maxWaitMs: 1000, maxWaiting: 2 });
  assert.equal(admission.admit(), true);
  assert.equal(admission.admit(), false);
  const first = admission.wait()!;
  const second = admission.wait()!;
  assert.ok(first && second);
  assert.equal(admission.wait(), null, 'the waiting line is full: refused at once');
  assert.equal(admission.waiting, 2);
  const order: string[] = [];
  void first.granted.then((ok) => order.push(`first ${ok}`));
  void second.granted.then((ok) => order.push(`second ${ok}`));
  admission.done();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, ['first true']);
  assert.equal(admission.inflight, 1, 'the place went to the waiter, not back to the pool');
  assert.equal(admission.admit(), false, 'a newcomer does not overtake the line');
  second.cancel();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, ['first true', 'second false']);
  assert.equal(admission.waiting, 0);
  admission.done();
  assert.equal(admission.inflight, 0);
  assert.equal(admission.admit(), true);
});

test('a waiting request is refused after maxWaitMs, and waiting is off by default', async () => {
  const admission = new AdmissionController({ targetLagMs: 20, maxInflight: 1, maxWaitMs: 20, maxWaiting: 4 });
  assert.equal(admission.admit(), true);
  const ticket = admission.wait()!;
  const started = performance.now();
  assert.equal(await ticket.granted, false);
  assert.ok(performance.now() - started >= 15, 'refused after about maxWaitMs');
  assert.equal(admission.waiting, 0);
  admission.done();
  assert.equal(admission.inflight, 0, 'a timed-out waiter took no place');
  const noWait = new AdmissionController({ targetLagMs: 20, maxInflight: 1 });
  assert.equal(noWait.admit(), true);
  assert.equal(noWait.wait(), null);
  const hasRoom = new AdmissionController({ targetLagMs: 20, maxInflight: 2, maxWaitMs: 20, maxWaiting: 4 });
  assert.equal(hasRoom.wait(), null, 'no waiting while a place is free (admit() refused for lag, not for room)');
});

test('overload means refusing: a full bound with room in the waiting line is not overload, a refusal is for 100 ms', async () => {
  const admission = new AdmissionController({ targetLagMs: 20, maxInflight: 1, maxWaitMs: 1000, maxWaiting: 1 });
  assert.equal(admission.admit(), true);
  assert.equal(admission.overloaded, false, 'busy, not overloaded');
  const ticket = admission.wait()!;
  assert.equal(admission.overloaded, false, 'a request waiting for a place is not a refusal');
  assert.equal(admission.wait(), null);
  assert.equal(admission.overloaded, true, 'the line was full: a request was refused');
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.equal(admission.overloaded, false, 'no refusal in the last 100 ms');
  ticket.cancel();
  assert.equal(await ticket.granted, false);
  assert.equal(admission.overloaded, false, 'a client that leaves the line is not a refusal');
});
