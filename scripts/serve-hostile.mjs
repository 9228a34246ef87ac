// The hostile-client measurements of `fathom serve` (issue 17), against a real server process
// on 127.0.0.1: slow and idle connections, the official `openai` client's keep-alive load,
// kept-alive latency, nested inputs, a second server on the port, huge prompts, and SIGTERM
// with streams and trickling connections in flight. Run it through scripts/serve-hostile.sh,
// which builds the model and installs the `openai` package; it prints one line per figure and
// exits non-zero when a target is missed.
//
//   node scripts/serve-hostile.mjs FATHOM_BIN MODEL.gguf NODE_MODULES_DIR WORK_DIR
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

const [bin, model, modulesDir, workDir] = process.argv.slice(2);
const require = createRequire(path.join(modulesDir, 'package.json'));
const OpenAI = require('openai');
const undici = require('undici');  // only for an openai client that closes each connection

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

// Starts `fathom serve`; resolves with {child, port} once /health answers 200.
async function startServer(args) {
  const child = spawn(bin, ['serve', '-m', model, '--port', '0', '-t', '2', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stderrText = () => stderr;
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${stderr}`)));
  });
  for (let i = 0; i < 400; i++) {
    const r = await request(port, 'GET', '/health').catch(() => null);
    if (r && r.status === 200) break;
    await sleep(25);
  }
  return { child, port };
}

function vm(pid, key) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${key}:\\s+(\\d+) kB`));
  return m ? Number(m[1]) * 1024 : 0;
}

// One request on its own connection (agent: false), or through `agent`.
function request(port, method, p, body, { agent = false, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, method, path: p, agent,
        headers: { ...(data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function rawSocket(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.closedByPeer = false;
    s.on('error', () => {});
    s.on('close', () => (s.closedByPeer = true));
    s.on('data', () => {});
  });
}

// 1. Slow and idle connections.
async function slowAndIdle() {
  const { child, port } = await startServer(['-c', '2048']);
  const trickling = [];
  const idle = [];
  for (let i = 0; i < 1000; i++) {
    trickling.push(await rawSocket(port));
    const s = await rawSocket(port);
    s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');  // answered, then held open kept-alive
    idle.push(s);
  }
  const head = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
  let i = 0;
  const timer = setInterval(() => { for (const s of trickling) if (!s.closedByPeer) s.write(head[i % head.length]); i++; }, 2000);
  for (const s of trickling) s.write(head[0]);
  await sleep(2500);
  let t0 = now();
  const h = await request(port, 'GET', '/health');
  const healthMs = now() - t0;
  t0 = now();
  const c = await request(port, 'POST', '/v1/completions', { prompt: 'Once upon a time', max_tokens: 16, ignore_eos: true });
  const completionMs = now() - t0;
  const openTrickle = trickling.filter((s) => !s.closedByPeer).length;
  const openIdle = idle.filter((s) => !s.closedByPeer).length;
  check(h.status === 200 && healthMs < 100, `1000 trickling + 1000 idle kept-alive connections (${openTrickle} + ${openIdle} open): /health ${h.status} in ${healthMs.toFixed(1)} ms (< 100)`);
  check(c.status === 200 && completionMs < 1000, `... a 16-token completion ${c.status} in ${completionMs.toFixed(1)} ms (< 1000)`);
  await sleep(9000);
  const closed = trickling.filter((s) => s.closedByPeer).length;
  check(closed === 1000, `trickling connections closed by the 10 s head deadline: ${closed} of 1000 after 11.5 s`);
  clearInterval(timer);
  for (const s of [...trickling, ...idle]) s.destroy();
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
}

// 2. 256 concurrent 16-token streams, official client (keep-alive agent) vs Connection: close.
async function openaiLoad() {
  const { child, port } = await startServer(['-c', '2048']);
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0 });
  const modelId = (await client.models.list()).data[0].id;
  // The same client, each request on a new connection that closes after it (undici's
  // pipelining 0 sends "connection: close"): the load whose latency keep-alive must match.
  const closing = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0,
                               fetch: undici.fetch, fetchOptions: { dispatcher: new undici.Agent({ pipelining: 0 }) } });
  const one = async (c = client) => {
    const t0 = now();
    try {
      const stream = await c.completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 16, stream: true, ignore_eos: true });
      let n = 0;
      for await (const chunk of stream) n += chunk.choices?.[0]?.text !== undefined ? 1 : 0;
      return { ok: true, ms: now() - t0 };
    } catch (e) {
      if (e.status !== 429) console.log(`  openai client error: ${e.status} ${e.message}`);
      return { ok: false, status: e.status, retryAfter: e.headers?.get?.('retry-after') ?? e.headers?.['retry-after'], ms: now() - t0 };
    }
  };
  const oneClose = async () => {
    const t0 = now();
    const r = await request(port, 'POST', '/v1/completions',
      { prompt: 'Once upon a time', max_tokens: 16, stream: true, ignore_eos: true }, { headers: { Connection: 'close' } });
    return { ok: r.status === 200, status: r.status, retryAfter: r.headers['retry-after'], ms: now() - t0 };
  };
  const run = async (f) => {
    const rs = await Promise.all(Array.from({ length: 256 }, () => f()));
    const ok = rs.filter((r) => r.ok);
    const r429 = rs.filter((r) => !r.ok && r.status === 429 && r.retryAfter);
    const p = (xs, q) => (xs.length ? pct(xs.map((r) => r.ms), q).toFixed(0) : '-');
    return { ok: ok.length, r429: r429.length, other: rs.length - ok.length - r429.length, p50: pct(rs.map((r) => r.ms), 50),
             text: `${ok.length} ok, ${r429.length} 429+Retry-After, ${rs.length - ok.length - r429.length} other; p50 ${p(rs, 50)} ms, ` +
                   `p90 ${p(rs, 90)} ms (ok: p50 ${p(ok, 50)}, 429: p50 ${p(r429, 50)})` };
  };
  await run(one);  // warm-up: the client's agent, the prefix cache
  const ka = await run(one);
  const cl = await run(() => one(closing));
  const raw = await run(oneClose);
  check(ka.other === 0, `openai client, default keep-alive agent, 256 streams: ${ka.text}`);
  check(cl.other === 0, `openai client, Connection: close, 256 streams: ${cl.text}`);
  check(raw.other === 0, `node http, Connection: close, 256 streams: ${raw.text}`);
  check(ka.p50 <= 2 * Math.max(cl.p50, 1), `keep-alive p50 / close p50 (same client) = ${(ka.p50 / cl.p50).toFixed(2)} (<= 2)`);

  // 3. 100 sequential requests on one kept-alive connection, timed by curl (one process, one
  // connection for all transfers: num_connects 0 after the first), so that no JavaScript
  // garbage collection lands in the figures. The engine's own time comes from /metrics.
  const curlTimes = (transfers) => {
    const args = [];
    for (const t of transfers) args.push('-s', '-o', '/dev/null', '-w', '%{time_total} %{num_connects}\\n', ...t, '--next');
    args.pop();
    const out = execFileSync('curl', args, { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(' ').map(Number));
    return { ms: out.slice(1).map(([t]) => t * 1000), connects: out.slice(1).reduce((n, [, c]) => n + c, 0) };
  };
  const url = (p) => `http://127.0.0.1:${port}${p}`;
  const models = curlTimes(Array.from({ length: 101 }, () => [url('/v1/models')]));
  const metricsBefore = (await request(port, 'GET', '/metrics')).text;
  const sum = (m, name) => Number(m.match(new RegExp(`^${name} (\\S+)$`, 'm'))[1]);
  const genBody = JSON.stringify({ prompt: 'Hello', max_tokens: 4, ignore_eos: true });
  const gen = curlTimes(Array.from({ length: 101 }, () => ['-H', 'Content-Type: application/json', '-d', genBody, url('/v1/completions')]));
  const metricsAfter = (await request(port, 'GET', '/metrics')).text;
  const finished = sum(metricsAfter, 'fathom_e2e_seconds_count') - sum(metricsBefore, 'fathom_e2e_seconds_count');
  const engineMs = (1000 * (sum(metricsAfter, 'fathom_e2e_seconds_sum') - sum(metricsBefore, 'fathom_e2e_seconds_sum'))) / finished;
  const meanGen = gen.ms.reduce((a, b) => a + b, 0) / gen.ms.length;
  check(pct(models.ms, 99) < 5 && models.connects === 0,
    `100 kept-alive GET /v1/models (curl, ${models.connects} reconnects): p50 ${pct(models.ms, 50).toFixed(3)} ms, p99 ${pct(models.ms, 99).toFixed(3)} ms (< 5)`);
  check(pct(gen.ms, 99) - engineMs < 5 && gen.connects === 0,
    `100 kept-alive 4-token completions (curl, ${gen.connects} reconnects): p50 ${pct(gen.ms, 50).toFixed(2)} ms, p99 ${pct(gen.ms, 99).toFixed(2)} ms; ` +
    `engine e2e mean ${engineMs.toFixed(2)} ms: overhead mean ${(meanGen - engineMs).toFixed(2)} ms, p99 - engine mean ${(pct(gen.ms, 99) - engineMs).toFixed(2)} ms (< 5)`);

  // 4. Nested JSON and a second server on the same port.
  const nested = '['.repeat(200000) + ']'.repeat(200000);
  const body = `{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"x":${nested}}}`;
  const n = await request(port, 'POST', '/v1/chat/completions', body).catch((e) => ({ status: `${e.code}` }));
  const after = await request(port, 'GET', '/health').catch((e) => ({ status: `${e.code}` }));
  check(n.status === 400 && after.status === 200, `chat_template_kwargs with 200k nested arrays (${body.length} bytes): ${n.status}; then /health ${after.status}`);
  if (after.status !== 200) return;
  const second = spawn(bin, ['serve', '-m', model, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let secondOut = '', secondErr = '';
  second.stdout.on('data', (d) => (secondOut += d));
  second.stderr.on('data', (d) => (secondErr += d));
  const code = await new Promise((r) => second.on('exit', r));
  check(code === 1 && !secondOut.includes('listening'), `second server on port ${port}: exit ${code}, "${secondErr.trim().split('\n').pop()}"`);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
}

// 4b. A chat template nested 100k deep.
async function nestedTemplate() {
  const file = path.join(workDir, 'nested.jinja');
  fs.writeFileSync(file, '{{ ' + '('.repeat(100000) + '1' + ')'.repeat(100000) + ' }}');
  const { child, port } = await startServer(['-c', '512', '--chat-template-file', file]);
  const r = await request(port, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  const h = await request(port, 'GET', '/health');
  check(r.status === 400 && h.status === 200, `chat template with 100k nested parentheses: ${r.status} (${(JSON.parse(r.text).error?.message ?? '').slice(0, 90)}); then /health ${h.status}`);
  child.kill('SIGTERM');
  await new Promise((res) => child.on('exit', res));
}

// 6. 16 concurrent 8 MB prompts.
async function hugePrompts() {
  const { child, port } = await startServer(['-c', '2048']);
  await sleep(300);
  const idle = vm(child.pid, 'VmRSS');
  const content = 'lorem ipsum '.repeat(Math.floor(8e6 / 12));
  const statuses = await Promise.all(Array.from({ length: 16 }, (_, i) =>
    request(port, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: i + content }], max_tokens: 1 }).then((r) => r.status, () => 0)));
  const peak = vm(child.pid, 'VmHWM');
  const counts = statuses.reduce((m, s) => ((m[s] = (m[s] || 0) + 1), m), {});
  check(peak - idle < 1024 ** 3 && !statuses.includes(0) && !statuses.includes(500),
    `16 concurrent 8 MB chat prompts: statuses ${JSON.stringify(counts)}; RSS idle ${(idle / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB (+${((peak - idle) / 2 ** 20).toFixed(0)} MiB, < 1024)`);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
}

// 5. SIGTERM with 8 streams in flight and 50 trickling connections.
async function sigterm() {
  const dir = path.join(workDir, 'kvp');
  fs.rmSync(dir, { recursive: true, force: true });
  const { child, port } = await startServer(['-c', '8192', '--parallel', '8', '--shutdown-timeout', '3', '--kv-persist', dir]);
  const trickling = [];
  for (let i = 0; i < 50; i++) {
    const s = await rawSocket(port);
    s.write('POST /v1/completions HTTP/1.1\r\nHo');
    trickling.push(s);
  }
  const streams = Array.from({ length: 8 }, (_, i) =>
    request(port, 'POST', '/v1/completions', { prompt: `Story ${i}`, max_tokens: 8000, ignore_eos: true, stream: true }));
  for (let i = 0; i < 200; i++) {
    const m = (await request(port, 'GET', '/metrics')).text;
    if (/^fathom_requests_running 8$/m.test(m)) break;
    await sleep(10);
  }
  const t0 = now();
  child.kill('SIGTERM');
  const exited = new Promise((r) => child.on('exit', (code) => r({ code, ms: now() - t0 })));
  const results = await Promise.all(streams);
  const { code, ms } = await exited;
  const done = results.filter((r) => r.text.includes('"finish_reason":"length"')).length;
  const cut = results.filter((r) => r.text.includes('shutting_down') && r.text.includes('data: [DONE]')).length;
  const closed = trickling.filter((s) => s.closedByPeer).length;
  const saved = fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.prefix-cache'));
  check(code === 0 && ms < 4000 && done + cut === 8 && closed === 50 && saved,
    `SIGTERM, --shutdown-timeout 3, 8 streams + 50 trickling: exit ${code} after ${ms.toFixed(0)} ms (< 4000); streams finished ${done}, got shutting_down ${cut}; trickling closed ${closed}/50; kv-persist file written: ${saved}`);
  for (const s of trickling) s.destroy();
}

await slowAndIdle();
await openaiLoad();
await nestedTemplate();
await hugePrompts();
await sigterm();
console.log(failures === 0 ? 'all targets met' : `${failures} target(s) missed`);
process.exit(failures === 0 ? 0 : 1);
