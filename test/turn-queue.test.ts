/** TurnQueue: one job per event-loop turn, in order, and a throwing job does not stop the others. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TurnQueue } from '../src/routes/turn-queue.js';

test('queued jobs run one per event-loop turn, so other callbacks run between them', async () => {
  const order: string[] = [];
  const queue = new TurnQueue((error) => assert.fail(String(error)));
  queue.push(() => order.push('job 1'));
  queue.push(() => order.push('job 2'));
  queue.push(() => order.push('job 3'));
  assert.equal(queue.length, 3);
  // Queued after the jobs: with all jobs in one turn it would run last.
  setImmediate(() => order.push('other callback'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(order, ['job 1', 'other callback', 'job 2', 'job 3']);
  assert.equal(queue.length, 0);
  queue.push(() => order.push('job 4'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(order.at(-1), 'job 4', 'an idle queue starts again on the next push');
});

test('a job that throws is reported and the next jobs still run', async () => {
  const errors: unknown[] = [];
  const ran: number[] = [];
  const queue = new TurnQueue((error) => errors.push(error));
  queue.push(() => ran.push(1));
  queue.push(() => {
    throw new Error('boom');
  });
  queue.push(() => ran.push(3));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(ran, [1, 3]);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /boom/);
});
