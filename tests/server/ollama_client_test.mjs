// Drives a running `fathom serve` with the official `ollama` npm package, the way tools that
// speak Ollama do: node ollama_client_test.mjs HOST API_KEY MODEL PULL_MODEL. Prints one line per
// call and exits 0 when every check passes. PULL_MODEL is a repository the server can pull
// (--allow-pull, from an imitation of Hugging Face). The server runs a DeepSeek-R1 chat template, which opens a
// <think> block when asked (think: true), so replies carry message.thinking.
import { Ollama } from 'ollama';
import assert from 'node:assert/strict';

const [host, apiKey, model, pullModel] = process.argv.slice(2);
const ollama = new Ollama({ host, headers: { Authorization: `Bearer ${apiKey}` } });
const messages = [{ role: 'user', content: 'What is 2 + 2?' }];
const options = { num_predict: 8, temperature: 0 };

async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? `: ${detail}` : ''}`);
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 1;
  }
}

function stats(r) {
  assert.equal(r.done, true);
  assert.ok(['stop', 'length'].includes(r.done_reason), r.done_reason);
  assert.ok(r.eval_count >= 1 && r.eval_count <= options.num_predict, `eval_count ${r.eval_count}`);
  assert.ok(r.prompt_eval_count > 0);
  for (const d of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.ok(Number.isInteger(r[d]) && r[d] >= 0, `${d} ${r[d]}`);
  assert.ok(r.total_duration >= r.prompt_eval_duration + r.eval_duration);
  return `done_reason=${r.done_reason} prompt_eval_count=${r.prompt_eval_count} eval_count=${r.eval_count} ` +
         `total_duration=${(r.total_duration / 1e6).toFixed(1)}ms`;
}

await check('version', async () => {
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
  return v.version;
});

await check('list', async () => {
  const { models } = await ollama.list();
  assert.equal(models.length, 1);
  assert.equal(models[0].name, model);
  assert.equal(models[0].details.format, 'gguf');
  assert.equal(models[0].details.family, 'qwen2');
  assert.ok(models[0].size > 0);
  return `${models[0].name} ${models[0].details.family} ${models[0].details.parameter_size} ${models[0].details.quantization_level} ${models[0].size} bytes`;
});

await check('show', async () => {
  const s = await ollama.show({ model });
  assert.equal(s.model_info['general.architecture'], 'qwen2');
  assert.ok(s.model_info['general.parameter_count'] > 0);
  assert.ok(s.template.includes('<think>'));
  assert.deepEqual(s.capabilities, ['completion', 'thinking']);
  assert.match(s.parameters, /^temperature /);
  return `capabilities=${s.capabilities.join(',')} parameters=${s.model_info['general.parameter_count']}`;
});

await check('ps', async () => {
  const { models } = await ollama.ps();
  assert.equal(models.length, 1);
  assert.equal(models[0].model, model);
  assert.ok(models[0].size > 0);
  return `${models[0].name} expires_at=${models[0].expires_at}`;
});

let plain;
await check('chat (not streamed, think: true)', async () => {
  plain = await ollama.chat({ model, messages, think: true, stream: false, options });
  assert.equal(plain.model, model);
  assert.equal(plain.message.role, 'assistant');
  assert.equal(typeof plain.message.content, 'string');
  assert.ok(plain.message.thinking.length > 0, 'no thinking');
  return stats(plain);
});

await check('chat (streamed, think: true)', async () => {
  let content = '', thinking = '', parts = 0, last;
  for await (const part of await ollama.chat({ model, messages, think: true, stream: true, options })) {
    content += part.message.content;
    thinking += part.message.thinking ?? '';
    parts++;
    last = part;
  }
  assert.equal(content, plain.message.content);
  assert.equal(thinking, plain.message.thinking);
  assert.equal(last.eval_count, plain.eval_count);
  return `${parts} parts; ${stats(last)}`;
});

await check('chat (format: JSON schema)', async () => {
  const format = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
  const r = await ollama.chat({ model, messages, format, stream: false, options: { num_predict: 64, temperature: 0 } });
  const value = JSON.parse(r.message.content);
  assert.equal(typeof value.ok, 'boolean');
  assert.equal(r.done_reason, 'stop');
  return r.message.content;
});

let generated;
await check('generate (not streamed)', async () => {
  generated = await ollama.generate({ model, prompt: 'Once upon a time', raw: true, stream: false, options });
  assert.equal(typeof generated.response, 'string');
  return stats(generated);
});

await check('generate (streamed)', async () => {
  let response = '', parts = 0, last;
  for await (const part of await ollama.generate({ model, prompt: 'Once upon a time', raw: true, stream: true, options })) {
    response += part.response;
    parts++;
    last = part;
  }
  assert.equal(response, generated.response);
  return `${parts} parts; ${stats(last)}`;
});

await check('abort a streamed chat', async () => {
  // No limit: the reply runs towards the end of the server's 8192-token context, long after the abort.
  const stream = await ollama.chat({ model, messages, stream: true, options: { num_predict: -1, temperature: 0 } });
  let parts = 0;
  await assert.rejects(async () => {
    for await (const part of stream) {
      if (++parts === 2) stream.abort();
    }
  }, (err) => err.name === 'AbortError');
  return `aborted after ${parts} parts`;
});

await check('unknown model is a 404 ResponseError', async () => {
  await assert.rejects(ollama.chat({ model: 'missing', messages, stream: false }), (err) => {
    assert.equal(err.status_code, 404);
    assert.match(err.error, /missing/);
    return true;
  });
});

await check('unsupported option is a 400 naming it', async () => {
  await assert.rejects(ollama.chat({ model, messages, stream: false, options: { num_gpu: 1 } }), (err) => {
    assert.equal(err.status_code, 400);
    assert.match(err.error, /options\.num_gpu/);
    return true;
  });
});

await check('pull (streamed)', async () => {
  const statuses = [];
  let last;
  for await (const part of await ollama.pull({ model: pullModel, stream: true })) {
    statuses.push(part.status);
    if (part.total !== undefined) last = part;
  }
  assert.equal(statuses[0], 'pulling manifest');
  assert.deepEqual(statuses.slice(-3), ['verifying sha256 digest', 'writing manifest', 'success']);
  assert.ok(last && last.total > 0 && last.completed === last.total, JSON.stringify(last));
  assert.match(last.digest, /^sha256:[0-9a-f]{64}$/);
  return `${statuses.length} lines, last ${JSON.stringify(last)}`;
});

await check('pull (not streamed)', async () => {
  const r = await ollama.pull({ model: pullModel, stream: false });
  assert.equal(r.status, 'success');
  return JSON.stringify(r);
});

await check('pull of a missing repository is a 404 ResponseError', async () => {
  await assert.rejects(ollama.pull({ model: 'fathom-test/missing-GGUF', stream: false }), (err) => {
    assert.equal(err.status_code, 404);
    assert.match(err.error, /404 Not Found/);
    return true;
  });
});
