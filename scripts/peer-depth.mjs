// The peer (llama.cpp through node-llama-cpp, installed by ../shared/peer/setup.sh) measured like
// `fathom bench -d D` and llama-bench's -d: D tokens are evaluated into the cache once, untimed;
// then each pp run evaluates P tokens as one batch after them and each tg run N single-token
// steps, and the run's tokens are erased again so every run starts from the same D tokens.
// Mean ± stddev over R runs after one warm-up; the KV cache is f16 (the library's default,
// also fathom's), flash attention as the library decides ("auto").
// Usage: node peer-depth.mjs MODEL.gguf [--threads 2] [--depth 4096] [--pp 512] [--tg 64] [--reps 3] [--json]
// Run it from a folder whose node_modules holds node-llama-cpp (scripts/compare-peer.sh copies it there).
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const usage = "usage: node peer-depth.mjs MODEL.gguf [--threads 2] [--depth 4096] [--pp 512] [--tg 64] [--reps 3] [--json]";
const fail = message => { console.error(`peer-depth: ${message}\n${usage}`); process.exit(2); };
const limits = { threads: [1, 1024], depth: [0, 1 << 20], pp: [0, 1 << 16], tg: [0, 1 << 16], reps: [1, 100] };
const opt = { threads: 2, depth: 4096, pp: 512, tg: 64, reps: 3 };
let modelPath = null, asJson = false;
for (const args = process.argv.slice(2); args.length > 0;) {
  const a = args.shift();
  if (a === "--json") asJson = true;
  else if (a.startsWith("--")) {
    const name = a.slice(2), v = Number(args.shift());
    if (!(name in limits)) fail(`unknown option ${a}`);
    const [lo, hi] = limits[name];
    if (!Number.isInteger(v) || v < lo || v > hi) fail(`${a} must be an integer from ${lo} to ${hi}`);
    opt[name] = v;
  } else if (modelPath === null) modelPath = a;
  else fail(`unexpected argument ${a}`);
}
if (modelPath === null) fail("no model");
const { threads, depth, pp, tg, reps } = opt;

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: threads });
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
const nVocab = model.tokens.vocabularySize ?? 1000;
const context = await model.createContext({
  contextSize: depth + Math.max(pp, tg) + 16, batchSize: Math.max(pp, 512), threads,
  batching: { dispatchSchedule: dispatch => dispatch() },
});
const seq = context.getSequence();

// Deterministic pseudo-random tokens away from the special tokens at the ends of the vocabulary.
let state = 4242;
const rnd = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
const tokens = n => Array.from({ length: n }, () => 100 + Math.floor(rnd() * Math.min(nVocab - 200, 30000)));
const summary = xs => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return { mean, sd };
};
const rewind = async () => {
  if (seq.nextTokenIndex > depth) await seq.eraseContextTokenRanges([{ start: depth, end: seq.nextTokenIndex }]);
  if (seq.nextTokenIndex !== depth) throw new Error(`the cache holds ${seq.nextTokenIndex} tokens after rewinding, not ${depth}`);
};

const t0 = performance.now();
if (depth > 0) await seq.evaluateWithoutGeneratingNewTokens(tokens(depth));
const fillSeconds = (performance.now() - t0) / 1000;

const ppRates = [], tgRates = [];
for (let r = 0; r <= reps; r++) {  // r = 0 is the warm-up
  if (pp > 0) {
    const batch = tokens(pp), t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(batch);
    if (r > 0) ppRates.push(pp / ((performance.now() - t) / 1000));
    await rewind();
  }
  if (tg > 0) {
    const steps = tokens(tg), t = performance.now();
    for (const token of steps) await seq.evaluateWithoutGeneratingNewTokens([token]);
    if (r > 0) tgRates.push(tg / ((performance.now() - t) / 1000));
    await rewind();
  }
}
const out = {
  engine: "llama.cpp (node-llama-cpp prebuilt)", model: modelPath, threads, depth, pp, tg, reps,
  fill_seconds: fillSeconds, flash_attention: context.flashAttention,
  pp_tok_s: ppRates.length ? summary(ppRates) : null, tg_tok_s: tgRates.length ? summary(tgRates) : null,
};
if (asJson) console.log(JSON.stringify(out));
else console.log(`llama.cpp  threads=${threads} depth=${depth}  pp${pp}: ${out.pp_tok_s?.mean.toFixed(2)} ± ${out.pp_tok_s?.sd.toFixed(2)} tok/s  ` +
                 `tg${tg}: ${out.tg_tok_s?.mean.toFixed(2)} ± ${out.tg_tok_s?.sd.toFixed(2)} tok/s  (fill ${fillSeconds.toFixed(1)} s)`);
await context.dispose();
await model.dispose();
await llama.dispose();
