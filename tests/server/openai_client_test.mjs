// Drives a running `fathom serve` with the official `openai` npm package, the way applications
// do: node openai_client_test.mjs BASE_URL API_KEY MODEL. Exits 0 when every check passes.
// The server is expected to run with a DeepSeek-R1 chat template (prompts end in "<think>\n"),
// so chat answers carry reasoning_content.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'user', content: 'What is 2 + 2?' }];
// The test template opens <think> only when asked (extra body fields pass through the SDK).
const thinking = { chat_template_kwargs: { enable_thinking: true } };

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 1;
  }
}

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [model]);
});

let plain;
await check('chat non-streaming with usage and reasoning_content', async () => {
  plain = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, ignore_eos: true, ...thinking });
  assert.equal(plain.object, 'chat.completion');
  const choice = plain.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  assert.equal(typeof choice.message.reasoning_content, 'string');
  assert.ok(choice.message.reasoning_content.length > 0);
  assert.equal(choice.finish_reason, 'length');
  assert.equal(plain.usage.completion_tokens, 8);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
});

await check('chat streaming with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, ignore_eos: true, stream: true, ...thinking,
    stream_options: { include_usage: true },
  });
  let content = '', reasoning = '', finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role ??= c.delta.role ?? null;
      content += c.delta.content ?? '';
      reasoning += c.delta.reasoning_content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(finish, 'length');
  assert.equal(content, plain.choices[0].message.content);
  assert.equal(reasoning, plain.choices[0].message.reasoning_content);
  assert.deepEqual(usage, plain.usage);
});

await check('completions with a stop string', async () => {
  const base = { model, prompt: 'The weather today', max_tokens: 24, temperature: 0, ignore_eos: true };
  const full = (await client.completions.create(base)).choices[0].text;
  const m = /[A-Za-z]{2}/.exec(full.slice(2));
  assert.ok(m, `no ASCII pair in ${JSON.stringify(full)}`);
  const stop = m[0];
  const cut = await client.completions.create({ ...base, stop: [stop] });
  assert.equal(cut.choices[0].finish_reason, 'stop');
  assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
});

await check('bad parameter surfaces as BadRequestError (400)', async () => {
  await assert.rejects(client.chat.completions.create({ model, messages, n: 17 }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'n');
    return true;
  });
});

const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
];
const toolHistory = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
    function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"sky": "cloudy"}' },
  { role: 'user', content: 'And in Rome?' },
];

await check('tools and a tool-call history are accepted', async () => {
  const r = await client.chat.completions.create({ model, messages: toolHistory, tools, max_tokens: 4, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.ok(['stop', 'length', 'tool_calls'].includes(r.choices[0].finish_reason));
});

// The server opens the call in the prompt; the model (random weights here) writes the
// arguments. Without the grammar engine they are JSON only when the model writes JSON, so this
// checks what the server guarantees: one call of the named function, arguments a string.
let forced;
await check('tool_choice required returns tool_calls', async () => {
  forced = await client.chat.completions.create({
    model, messages: toolHistory, tools, tool_choice: 'required', max_tokens: 8, temperature: 0 });
  const choice = forced.choices[0];
  assert.ok(['tool_calls', 'length'].includes(choice.finish_reason), choice.finish_reason);
  assert.equal(choice.message.tool_calls.length, 1);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_[0-9A-Za-z]{24}$/);
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof call.function.arguments, 'string');
  let parsed = null;
  try { parsed = JSON.parse(call.function.arguments); } catch { /* noise: see above */ }
  console.log(`     arguments ${JSON.stringify(call.function.arguments)} ${parsed ? 'parse' : 'do not parse'} as JSON`);
});

await check('tool_choice required streamed: the SDK assembles the same call', async () => {
  const api = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
  const stream = api.stream({
    model, messages: toolHistory, tools, tool_choice: 'required', max_tokens: 8, temperature: 0 });
  const final = await stream.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.equal(call.function.arguments, forced.choices[0].message.tool_calls[0].function.arguments);
});

await check('n = 3 gives three choices', async () => {
  const r = await client.chat.completions.create({ model, messages, n: 3, max_tokens: 4, temperature: 1, seed: 3, ignore_eos: true });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage.completion_tokens, 12);
});

const auth = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
async function post(path, body) {
  const res = await fetch(`${baseURL}${path}`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

await check('/tokenize and /detokenize round trip', async () => {
  const { tokens } = await post('/tokenize', { content: 'Hello world' });
  assert.ok(tokens.length >= 2);
  const { content } = await post('/detokenize', { tokens });
  assert.equal(content, 'Hello world');
});

await check('logit_bias +100 makes greedy pick a token, -100 bans it', async () => {
  const { tokens } = await post('/tokenize', { content: ' banana' });
  assert.equal(tokens.length, 1);
  const base = { model, prompt: 'The weather today', max_tokens: 2, temperature: 0, ignore_eos: true };
  const up = await client.completions.create({ ...base, logit_bias: { [tokens[0]]: 100 } });
  assert.equal(up.choices[0].text, ' banana banana');
  const first = (await client.completions.create({ ...base, max_tokens: 1 })).choices[0].text;
  const firstIds = (await post('/tokenize', { content: first })).tokens;
  const banned = await client.completions.create({ ...base, max_tokens: 1, logit_bias: { [firstIds[0]]: -100 } });
  assert.notEqual(banned.choices[0].text, first);
});

// Structured output: the model's words are noise (random weights), so only the grammar makes
// them valid. 100 responses, each checked by an independent validator (ajv).
const schemas = [
  { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 999 },
                                  color: { enum: ['red', 'green', 'blue'] } },
    required: ['ok', 'n', 'color'], additionalProperties: false },
  { type: 'object', properties: { city: { type: 'string', maxLength: 12 },
                                  where: { type: 'object', properties: { lat: { type: 'integer', minimum: -90, maximum: 90 },
                                                                          lon: { type: 'integer', minimum: -180, maximum: 180 } },
                                           required: ['lat', 'lon'], additionalProperties: false },
                                  tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 4 } },
    required: ['city', 'where', 'tags'], additionalProperties: false },
  { type: 'object', properties: { answer: { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'boolean' }, { const: 'none' }] },
                                  day: { type: 'string', format: 'date' } },
    required: ['answer', 'day'], additionalProperties: false },
];
await check('response_format json_schema: 100 of 100 responses validate (ajv)', async () => {
  const Ajv = (await import('ajv')).default;
  const addFormats = (await import('ajv-formats')).default;
  const ajv = new Ajv({ strict: false });
  addFormats(ajv);
  const validators = schemas.map((schema) => ajv.compile(schema));
  let valid = 0;
  const failures = [];
  for (let i = 0; i < 100; i++) {
    const k = i % schemas.length;
    const r = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: `Item ${i}` }], max_tokens: 300, temperature: 1, seed: i,
      response_format: { type: 'json_schema', json_schema: { name: `s${k}`, strict: true, schema: schemas[k] } } });
    let doc;
    try { doc = JSON.parse(r.choices[0].message.content); } catch { doc = undefined; }
    if (doc !== undefined && validators[k](doc)) valid++;
    else failures.push(`#${i} (${r.choices[0].finish_reason}): ${r.choices[0].message.content}`);
  }
  assert.equal(valid, 100, failures.slice(0, 3).join('\n'));
});

await check('wrong API key surfaces as AuthenticationError (401)', async () => {
  const intruder = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(intruder.chat.completions.create({ model, messages, max_tokens: 1 }), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 401);
    return true;
  });
});
