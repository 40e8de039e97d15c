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

test('a waiting line that keeps overflowing is sustained overload: the bound and the wait shrink until no request is refused for the gap', async () => {
  let now = 0;
  const admission = new AdmissionController({
    targetLagMs: 20,
    maxInflight: 4,
    maxWaitMs: 10_000,
    maxWaiting: 1,
    sustained: { afterMs: 200, gapMs: 50, maxInflight: 2, maxWaitMs: 10 },
    now: () => now,
  });
  for (let i = 0; i < 4; i++) assert.equal(admission.admit(), true);
  const patient = admission.wait()!;
  assert.ok(patient, 'one place in the line');
  // The line overflows every 40 ms: after 200 ms of that it is sustained, not a burst.
  for (now = 0; now < 200; now += 40) {
    assert.equal(admission.admit(), false);
    assert.equal(admission.wait(), null, 'line full');
    assert.equal(admission.lastRefusal, 'line_full');
    assert.equal(admission.sustainedOverload, false, `not yet at ${now} ms`);
  }
  assert.equal(admission.admit(), false);
  assert.equal(admission.wait(), null);
  assert.equal(admission.sustainedOverload, true, `sustained at ${now} ms`);
  assert.equal(admission.maxInflight, 2);
  // A finished request does not hand its place on while more than the smaller bound are in progress.
  admission.done();
  admission.done();
  assert.equal(admission.inflight, 2);
  assert.equal(admission.waiting, 1, 'the waiter still waits: 2 in progress is the bound now');
  admission.done();
  assert.equal(await patient.granted, true, 'below the smaller bound the oldest waiter gets the place');
  assert.equal(admission.inflight, 2);
  // A request that waits now waits the shorter time (10 ms, not 10 s).
  const hurried = admission.wait()!;
  const started = performance.now();
  assert.equal(await hurried.granted, false);
  assert.ok(performance.now() - started < 5_000, 'refused after the sustained-overload wait');
  assert.equal(admission.lastRefusal, 'wait_timeout');
  // Every refusal, a timed-out wait included, keeps it sustained; 50 ms without one ends it.
  now += 40;
  assert.equal(admission.sustainedOverload, true);
  now += 60;
  assert.equal(admission.sustainedOverload, false, 'no refusal for more than the gap');
  assert.equal(admission.maxInflight, 4, 'the bound is back');
  assert.equal(admission.admit(), true);
  assert.equal(admission.admit(), true);
  assert.equal(admission.inflight, 4);
});

test('refusals that never overflow the line (a burst no larger than the bound plus the line timing out) are not sustained overload', async () => {
  let now = 0;
  const admission = new AdmissionController({
    targetLagMs: 20,
    maxInflight: 1,
    maxWaitMs: 5,
    maxWaiting: 2,
    sustained: { afterMs: 100, maxInflight: 1, maxWaitMs: 1 },
    now: () => now,
  });
  assert.equal(admission.admit(), true);
  for (; now < 500; now += 20) {
    const ticket = admission.wait()!;
    assert.ok(ticket, 'room in the line');
    assert.equal(await ticket.granted, false, 'timed out');
    assert.equal(admission.lastRefusal, 'wait_timeout');
    assert.equal(admission.sustainedOverload, false);
  }
  assert.equal(admission.overloaded, true, 'refusing, so parse turns may be bounded');
});

test('when the bound grows back, the waiters get the free places before newcomers', async () => {
  let now = 0;
  const admission = new AdmissionController({ targetLagMs: 20, maxInflight: 2, maxWaitMs: 10_000, maxWaiting: 1, sustained: { afterMs: 10, maxInflight: 1, maxWaitMs: 10_000 }, now: () => now });
  assert.equal(admission.admit(), true);
  assert.equal(admission.admit(), true);
  const first = admission.wait()!;
  for (now = 0; now <= 20; now += 10) assert.equal(admission.wait(), null);
  assert.equal(admission.sustainedOverload, true);
  admission.done();
  admission.done();
  assert.equal(await first.granted, true);
  const second = admission.wait()!;
  assert.ok(second, 'waits: the bound is 1 and 1 is in progress');
  now += 100;
  assert.equal(admission.sustainedOverload, false);
  const order: string[] = [];
  void second.granted.then(() => order.push('waiter'));
  assert.equal(admission.admit(), false, 'the newcomer does not overtake: the waiter took the free place');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(order, ['waiter']);
  assert.equal(admission.inflight, 2);
});
