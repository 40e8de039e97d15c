/** TurnQueue: jobs in order in turns bounded by a budget read at every turn; a throwing job does not stop the others. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TurnQueue } from '../src/routes/turn-queue.js';

test('with a zero budget, queued jobs run one per event-loop turn, so other callbacks run between them', async () => {
  const order: string[] = [];
  const queue = new TurnQueue(() => 0, (error) => assert.fail(String(error)));
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
  const queue = new TurnQueue(() => 0, (error) => errors.push(error));
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

test('a turn runs jobs until its budget is spent, then yields to the event loop', async () => {
  const order: string[] = [];
  let yields = 0;
  const queue = new TurnQueue(() => 15, () => undefined, () => yields++);
  const busy = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };
  for (let i = 1; i <= 4; i++) queue.push(() => (busy(10), order.push(`job ${i}`)));
  setImmediate(() => order.push('other callback'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  // Jobs 1 and 2 fit in the first 15 ms turn (job 2 starts at 10 ms); job 3 starts the next turn.
  assert.deepEqual(order, ['job 1', 'job 2', 'other callback', 'job 3', 'job 4']);
  assert.equal(yields, 1, 'one turn ended at its budget with jobs left; the last one emptied the queue');
});

test('the budget is read at every turn', async () => {
  let budget = Infinity;
  const order: string[] = [];
  const queue = new TurnQueue(() => budget, () => undefined);
  for (let i = 1; i <= 3; i++) queue.push(() => order.push(`job ${i}`));
  setImmediate(() => order.push('other callback'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(order, ['job 1', 'job 2', 'job 3', 'other callback'], 'an unlimited budget runs the whole burst in one turn');
  order.length = 0;
  budget = 0;
  for (let i = 1; i <= 2; i++) queue.push(() => order.push(`job ${i}`));
  setImmediate(() => order.push('other callback'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(order, ['job 1', 'other callback', 'job 2']);
});

test('/v1/rank answers the same through bounded parse turns (while shedding) as when Fastify parses inline', async (t) => {
  const { makeRepo } = await import('./helpers/fixture-repo.js');
  const { sampleRequest, startApp } = await import('./helpers/app.js');
  const repo = makeRepo();
  const inline = await startApp(repo.dir, { parseTurnBudgetMs: 0, maxInflightRequests: 100 });
  // Twelve requests at once against a cap of twelve: all are admitted, and the last one admitted
  // makes admission control report overload, so their bodies are parsed about one per turn.
  const bounded = await startApp(repo.dir, { parseTurnBudgetMs: 0.001, maxInflightRequests: 12 });
  t.after(async () => {
    await inline.close();
    await bounded.close();
    repo.cleanup();
  });
  const requests = Array.from({ length: 12 }, (_, i) => sampleRequest(30, 10, i + 1));
  const all = (app: typeof inline) => Promise.all(requests.map((payload) => app.inject({ method: 'POST', url: '/v1/rank', payload })));
  const [a, b] = await Promise.all([all(inline), all(bounded)]);
  const yielded = (await bounded.inject({ method: 'GET', url: '/metrics' })).body.match(/^rank_parse_turns_yielded_total (\d+)/m);
  assert.ok(yielded && Number(yielded[1]) > 0, 'the bounded app parsed in bounded turns');
  assert.match((await inline.inject({ method: 'GET', url: '/metrics' })).body, /^rank_parse_turns_yielded_total 0$/m);
  // Batches are composed differently, and ONNX Runtime's float32 sums differ in the last bits with
  // the batch shape: the same scores to 1e-5, not bit for bit.
  type Item = { adId: number; pctr: number; pcvr?: number };
  for (let i = 0; i < requests.length; i++) {
    assert.equal(a[i].statusCode, 200, a[i].body);
    assert.equal(b[i].statusCode, 200, b[i].body);
    const expected = new Map<number, Item>(a[i].json().ranked.map((r: Item) => [r.adId, r]));
    const got: Item[] = b[i].json().ranked;
    assert.equal(got.length, expected.size);
    for (const r of got) {
      const e = expected.get(r.adId)!;
      assert.ok(Math.abs(r.pctr - e.pctr) < 1e-5 && Math.abs((r.pcvr ?? 0) - (e.pcvr ?? 0)) < 1e-5, `request ${i} ad ${r.adId}`);
    }
  }
});
