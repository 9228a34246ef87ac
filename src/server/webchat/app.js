// fathom's built-in web chat: streams replies from /v1/chat/completions, keeps conversations
// in localStorage, and shows a live panel fed by /metrics. No dependencies, no build step.
// Model text only ever reaches the page as text nodes (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const STORE_KEY = 'fathom.conversations';
const KEY_KEY = 'fathom.apiKey';
const SETTINGS_KEY = 'fathom.settings';
const METRICS_INTERVAL_MS = 2000;
const TPS_WINDOW = 5;  // metrics samples averaged for tokens/s (the counter moves when requests end)

let conversations = loadJson(STORE_KEY, []);  // [{id, title, updated, messages: [{role, content, reasoning, error}]}]
let currentId = conversations.length ? conversations[0].id : null;
let controller = null;  // AbortController of the reply being streamed

function loadJson(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  localStorage.setItem(STORE_KEY, JSON.stringify(conversations));
}

function current() {
  return conversations.find((c) => c.id === currentId) ?? null;
}

// ---- API key: asked for when the server answers 401 ----------------------------------------

function askKey() {
  return new Promise((resolve) => {
    const dialog = $('key-dialog');
    $('key-input').value = '';
    dialog.addEventListener('close', () => resolve($('key-input').value.trim()), { once: true });
    dialog.showModal();
  });
}

async function api(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(init.headers ?? {}) };
    const key = localStorage.getItem(KEY_KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401 || attempt > 0) return res;
    const entered = await askKey();
    if (!entered) return res;
    localStorage.setItem(KEY_KEY, entered);
  }
}

// ---- markdown: code blocks, inline code, emphasis, lists, headings, paragraphs -------------

function appendInline(parent, text) {
  const re = /`([^`\n]+)`|\*\*([^*\n]+)\*\*|\*([^*\s][^*\n]*)\*|(^|[^\w])_([^_\s][^_\n]*)_(?!\w)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    let start = m.index;
    if (m[5] !== undefined) start += m[4].length;  // the character before _ stays text
    parent.append(document.createTextNode(text.slice(last, start)));
    let el;
    if (m[1] !== undefined) (el = document.createElement('code')).textContent = m[1];
    else if (m[2] !== undefined) (el = document.createElement('strong')).textContent = m[2];
    else (el = document.createElement('em')).textContent = m[3] ?? m[5];
    parent.append(el);
    last = m.index + m[0].length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

const LIST_ITEM = /^\s*([-*+]|\d+[.)])\s+(.*)$/;

function renderMarkdown(parent, text) {
  parent.replaceChildren();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.startsWith('```')) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith('```'); i++) code.push(lines[i]);
      i++;  // the closing fence (absent while the block is still streaming)
      const pre = document.createElement('pre');
      const el = document.createElement('code');
      el.textContent = code.join('\n');
      pre.append(el);
      parent.append(pre);
    } else if (LIST_ITEM.test(line)) {
      const list = document.createElement(/^\s*\d/.test(line) ? 'ol' : 'ul');
      for (; i < lines.length && LIST_ITEM.test(lines[i]); i++) {
        const li = document.createElement('li');
        appendInline(li, LIST_ITEM.exec(lines[i])[2]);
        list.append(li);
      }
      parent.append(list);
    } else if (/^#{1,6}\s/.test(line)) {
      const h = document.createElement('h4');
      appendInline(h, line.replace(/^#+\s*/, ''));
      parent.append(h);
      i++;
    } else if (line.trim() === '') {
      i++;
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() !== '' && !lines[i].startsWith('```') && !LIST_ITEM.test(lines[i]) &&
             !/^#{1,6}\s/.test(lines[i]); i++) para.push(lines[i]);
      const p = document.createElement('p');
      para.forEach((l, k) => {
        if (k) p.append(document.createElement('br'));
        appendInline(p, l);
      });
      parent.append(p);
    }
  }
}

// ---- rendering ------------------------------------------------------------------------------

function renderList() {
  const list = $('conversations');
  list.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement('li');
    li.className = c.id === currentId ? 'active' : '';
    li.dataset.id = c.id;
    const title = document.createElement('span');
    title.textContent = c.title;
    const del = document.createElement('button');
    del.type = 'button';
    del.title = 'Delete';
    del.textContent = '×';
    del.addEventListener('click', (e) => {
      e.stopPropagation();
      conversations = conversations.filter((x) => x.id !== c.id);
      if (currentId === c.id) currentId = conversations.length ? conversations[0].id : null;
      save();
      render();
    });
    li.append(title, del);
    li.addEventListener('click', () => {
      if (controller) return;
      currentId = c.id;
      render();
    });
    list.append(li);
  }
}

function messageElement(m) {
  const el = document.createElement('div');
  el.className = `msg ${m.role}`;
  const role = document.createElement('div');
  role.className = 'role';
  role.textContent = m.role === 'user' ? 'You' : 'Assistant';
  el.append(role);
  if (m.reasoning) {
    const details = document.createElement('details');
    details.className = 'thinking';
    details.open = Boolean(m.reasoningOpen);  // kept across re-renders while the reply streams
    details.addEventListener('toggle', () => {
      m.reasoningOpen = details.open;
      save();
    });
    const summary = document.createElement('summary');
    summary.textContent = 'Reasoning';
    const body = document.createElement('div');
    body.className = 'reasoning';
    body.textContent = m.reasoning;
    details.append(summary, body);
    el.append(details);
  }
  const content = document.createElement('div');
  content.className = 'content';
  if (m.role === 'user') content.textContent = m.content;
  else renderMarkdown(content, m.content);
  el.append(content);
  if (m.error) {
    const err = document.createElement('p');
    err.className = 'error';
    err.textContent = m.error;
    el.append(err);
  }
  return el;
}

function renderMessages() {
  const box = $('messages');
  box.replaceChildren(...(current()?.messages ?? []).map(messageElement));
  box.scrollTop = box.scrollHeight;
}

function render() {
  renderList();
  renderMessages();
}

// Replaces the last message's element while it streams (once per animation frame).
let pending = false;
function updateLast() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const box = $('messages');
    const msgs = current()?.messages ?? [];
    if (!msgs.length || !box.lastElementChild) return renderMessages();
    box.lastElementChild.replaceWith(messageElement(msgs[msgs.length - 1]));
    box.scrollTop = box.scrollHeight;
  });
}

// ---- settings -------------------------------------------------------------------------------

const SETTING_IDS = ['model', 'system', 'temperature', 'top_p', 'max_tokens', 'think'];

function loadSettings() {
  const s = loadJson(SETTINGS_KEY, {});
  for (const id of SETTING_IDS) {
    if (s[id] === undefined || id === 'model') continue;
    if ($(id).type === 'checkbox') $(id).checked = s[id];
    else $(id).value = s[id];
  }
  return s;
}

function saveSettings() {
  const s = {};
  for (const id of SETTING_IDS) s[id] = $(id).type === 'checkbox' ? $(id).checked : $(id).value;
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
}

async function loadModels(saved) {
  const res = await api('/v1/models');
  if (!res.ok) return;
  const { data } = await res.json();
  const select = $('model');
  select.replaceChildren();
  for (const m of data) {
    const opt = document.createElement('option');
    opt.value = opt.textContent = m.id;
    select.append(opt);
  }
  if (saved.model && data.some((m) => m.id === saved.model)) select.value = saved.model;
}

// ---- sending and streaming ------------------------------------------------------------------

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
  $('status').textContent = busy ? 'Generating…' : '';
}

async function errorText(res) {
  try {
    const body = await res.json();
    return body.error?.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function send(text) {
  let conv = current();
  if (!conv) {
    conv = { id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`, title: '', messages: [] };
    conversations.unshift(conv);
    currentId = conv.id;
  }
  if (!conv.title) conv.title = text.slice(0, 40);
  conv.messages.push({ role: 'user', content: text });
  const reply = { role: 'assistant', content: '', reasoning: '' };
  conv.messages.push(reply);
  conv.updated = Date.now();
  save();
  render();

  const history = conv.messages.slice(0, -1).filter((m) => !m.error || m.content).map((m) => ({ role: m.role, content: m.content }));
  const system = $('system').value.trim();
  const body = {
    model: $('model').value || undefined,
    messages: system ? [{ role: 'system', content: system }, ...history] : history,
    stream: true,
    temperature: Number($('temperature').value),
    top_p: Number($('top_p').value),
    max_tokens: Number($('max_tokens').value) || undefined,
  };
  // The variables the DeepSeek V3.1 ("thinking") and R1-Distill/Qwen3 ("enable_thinking") templates read.
  if ($('think').checked) body.chat_template_kwargs = { thinking: true, enable_thinking: true };
  controller = new AbortController();
  setBusy(true);
  try {
    const res = await api('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.ok) {
      reply.error = await errorText(res);
      return;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data: ')) continue;  // SSE comments (": waiting")
          const data = line.slice(6);
          if (data === '[DONE]') continue;
          const chunk = JSON.parse(data);
          if (chunk.error) reply.error = chunk.error.message;
          const delta = chunk.choices?.[0]?.delta ?? {};
          reply.content += delta.content ?? '';
          reply.reasoning += delta.reasoning_content ?? '';
        }
        updateLast();
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') reply.stopped = true;
    else reply.error = String(e.message ?? e);
  } finally {
    controller = null;
    setBusy(false);
    if (reply.stopped) $('status').textContent = 'Stopped.';
    save();
    renderMessages();
  }
}

// ---- live metrics ---------------------------------------------------------------------------

// Prometheus text format: "name{labels} value"; values of one name are summed over labels.
function parsePrometheus(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[3]);
  }
  return out;
}

const samples = [];  // [{t, generated}]
async function pollMetrics() {
  try {
    const res = await fetch('/metrics');
    if (!res.ok) return;
    const m = parsePrometheus(await res.text());
    samples.push({ t: performance.now(), generated: m.fathom_generated_tokens_total ?? 0 });
    if (samples.length > TPS_WINDOW + 1) samples.shift();
    const first = samples[0], last = samples[samples.length - 1];
    const seconds = (last.t - first.t) / 1000;
    $('m-tps').textContent = seconds > 0 ? ((last.generated - first.generated) / seconds).toFixed(1) : '–';
    $('m-running').textContent = m.fathom_requests_running ?? '–';
    $('m-queue').textContent = m.fathom_requests_waiting ?? '–';
    const used = m.fathom_kv_blocks_used ?? 0, free = m.fathom_kv_blocks_free ?? 0;
    $('m-kv').textContent = used + free > 0 ? `${((100 * used) / (used + free)).toFixed(1)}%` : '–';
  } catch {
    // The server may be restarting; the next poll tries again.
  }
}

// ---- wiring ---------------------------------------------------------------------------------

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('input').value.trim();
  if (!text || controller) return;
  $('input').value = '';
  send(text);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
$('stop').addEventListener('click', () => controller?.abort());
$('new-chat').addEventListener('click', () => {
  if (controller) return;
  currentId = null;
  render();
  $('input').focus();
});
$('forget-key').addEventListener('click', () => localStorage.removeItem(KEY_KEY));
for (const id of SETTING_IDS) $(id).addEventListener('change', saveSettings);

render();
loadModels(loadSettings());
pollMetrics();
setInterval(pollMetrics, METRICS_INTERVAL_MS);
