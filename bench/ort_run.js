// Times ONNX Runtime (npm's onnxruntime-node) on one model: `node bench/ort_run.js MODEL.onnx
// INPUT.bin N,C,H,W --threads T --repeats R [--warmup K] [--dump DIR]`. INPUT.bin holds the
// float32 input (little-endian, C order). Prints one JSON object: ORT version, session options,
// per-run seconds and their median. --dump writes each output as DIR/<name>.bin (float32) plus
// DIR/outputs.json with names and shapes, for comparison with the exporting framework.
'use strict';

const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const opts = { threads: 1, repeats: 5, warmup: 1, dump: '' };
  const pos = [];
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '--threads' || a === '--repeats' || a === '--warmup' || a === '--dump') {
      if (i + 1 >= argv.length) throw new Error(`ort_run: ${a} needs a value`);
      const v = argv[++i];
      if (a === '--dump') {
        opts.dump = v;
      } else {
        const n = Number(v);
        if (!Number.isInteger(n) || n < (a === '--warmup' ? 0 : 1)) {
          throw new Error(`ort_run: ${a} expects a positive integer, got '${v}'`);
        }
        opts[a.slice(2)] = n;
      }
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 3) {
    throw new Error('usage: node ort_run.js MODEL.onnx INPUT.bin N,C,H,W --threads T --repeats R');
  }
  const dims = pos[2].split(',').map(Number);
  if (dims.length !== 4 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new Error(`ort_run: shape must be N,C,H,W positive integers, got '${pos[2]}'`);
  }
  return { model: pos[0], input: pos[1], dims, ...opts };
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const ort = require('onnxruntime-node');
  const raw = fs.readFileSync(o.input);
  const count = o.dims.reduce((a, b) => a * b, 1);
  if (raw.length !== count * 4) {
    throw new Error(`ort_run: ${o.input} has ${raw.length} bytes, expected ${count * 4} ` +
                    `(float32 ${o.dims.join('x')})`);
  }
  const data = new Float32Array(raw.buffer, raw.byteOffset, count);
  const sessionOptions = {
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  const session = await ort.InferenceSession.create(o.model, sessionOptions);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, o.dims) };
  let out = null;
  for (let i = 0; i < o.warmup; ++i) out = await session.run(feeds);
  const times = [];
  for (let i = 0; i < o.repeats; ++i) {
    const start = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  if (o.dump) {
    fs.mkdirSync(o.dump, { recursive: true });
    const meta = [];
    for (const name of session.outputNames) {
      const t = out[name];
      fs.writeFileSync(path.join(o.dump, `${name}.bin`), Buffer.from(t.data.buffer,
                       t.data.byteOffset, t.data.byteLength));
      meta.push({ name, dims: t.dims, type: t.type });
    }
    fs.writeFileSync(path.join(o.dump, 'outputs.json'), JSON.stringify(meta));
  }
  let version = 'unknown';
  try {
    version = require('onnxruntime-node/package.json').version;
  } catch (e) {
    version = ort.env && ort.env.versions ? String(ort.env.versions.common) : 'unknown';
  }
  console.log(JSON.stringify({
    onnxruntime_node: version, model: o.model, input: o.dims, threads: o.threads,
    inter_op_threads: 1, repeats: o.repeats, warmup: o.warmup, times_s: times,
    median_s: median(times),
  }));
}

main().catch((e) => {
  console.error(e && e.message ? e.message : String(e));
  process.exit(1);
});
