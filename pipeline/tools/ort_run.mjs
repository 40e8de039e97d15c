// Runs an ONNX model with onnxruntime-node (CPU) on golden-style JSON inputs and prints the outputs
// as JSON. Used by the Python pipeline for ONNX-vs-PyTorch parity (no onnxruntime for Python here).
// usage: node pipeline/tools/ort_run.mjs model.onnx inputs.json [--bench N]
//   inputs.json: {"cases": [{"inputs": {NAME: {dtype, shape, data}}}]}  or a single {"inputs": {...}}
//   stdout: {"cases": [{"outputs": {NAME: {dtype, shape, data}}, "ms": <run time>}]}
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const [modelPath, inputsPath, ...rest] = process.argv.slice(2);
if (!modelPath || !inputsPath) {
  console.error('usage: ort_run.mjs model.onnx inputs.json [--bench N]');
  process.exit(2);
}
const benchIdx = rest.indexOf('--bench');
const benchRuns = benchIdx >= 0 ? Number(rest[benchIdx + 1]) : 0;

function toTensor(spec) {
  if (spec.dtype === 'int64') {
    return new ort.Tensor('int64', BigInt64Array.from(spec.data.map((v) => BigInt(Math.trunc(v)))), spec.shape);
  }
  if (spec.dtype === 'float32') return new ort.Tensor('float32', Float32Array.from(spec.data), spec.shape);
  throw new Error(`unsupported dtype ${spec.dtype}`);
}

const doc = JSON.parse(readFileSync(inputsPath, 'utf8'));
const cases = doc.cases ?? [doc];
const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
});
const result = { inputNames: session.inputNames, outputNames: session.outputNames, cases: [] };
for (const c of cases) {
  const feeds = {};
  for (const [name, spec] of Object.entries(c.inputs)) feeds[name] = toTensor(spec);
  let out = await session.run(feeds);
  let ms = null;
  if (benchRuns > 0) {
    for (let i = 0; i < 5; i++) out = await session.run(feeds);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < benchRuns; i++) out = await session.run(feeds);
    ms = Number(process.hrtime.bigint() - t0) / 1e6 / benchRuns;
  }
  const outputs = {};
  for (const [name, t] of Object.entries(out)) {
    outputs[name] = { dtype: t.type, shape: t.dims.map(Number), data: Array.from(t.data, Number) };
  }
  result.cases.push({ outputs, ms });
}
process.stdout.write(JSON.stringify(result));
