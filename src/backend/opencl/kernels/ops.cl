// Row and element-wise ops on f32 activations.

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. One work-group of WG lanes per row.
kernel void rms_norm_f32(global const float* x, global const float* weight, global float* out, int n, float eps) {
  local float scratch[2 * WG];
  const int lid = get_local_id(0);
  global const float* xr = x + (ulong)get_group_id(0) * n;
  global float* o = out + (ulong)get_group_id(0) * n;
  float sum = 0.0f;
  for (int i = lid; i < n; i += WG) sum += xr[i] * xr[i];
  sum = wg_sum(sum, scratch);
  const float scale = 1.0f / sqrt(sum / (float)n + eps);
  for (int i = lid; i < n; i += WG) o[i] = xr[i] * scale * weight[i];
}

// out[i] = silu(gate[i]) * up[i].
kernel void swiglu_f32(global const float* gate, global const float* up, global float* out, int n) {
  const int i = get_global_id(0);
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.0f + exp(-g)) * up[i];
}

// x[i] += y[i].
kernel void add_f32(global float* x, global const float* y, int n) {
  const int i = get_global_id(0);
  if (i < n) x[i] += y[i];
}

// Rotary embedding of the first 2 * n_pairs dims of every head, in place; x: [n_tokens, n_heads,
// head_dim]. One work item per (token, head, pair). inv_freq[i] = base^(-2i/n_rot) / freq_factor[i];
// ramp[i] is YaRN's extrapolation mix (ext_factor already applied; all 0 without YaRN), mscale its
// magnitude factor. neox: pairs (i, i + n_pairs) instead of (2i, 2i + 1).
kernel void rope_f32(global float* x, global const int* positions, global const float* inv_freq,
                     global const float* ramp, int n_tokens, int n_heads, int head_dim, int n_pairs, int neox,
                     float freq_scale, float mscale) {
  const int item = get_global_id(0);
  if (item >= n_tokens * n_heads * n_pairs) return;
  const int i = item % n_pairs;
  const int head = item / n_pairs;  // token * n_heads + head
  const int t = head / n_heads;
  const float theta_extrap = (float)positions[t] * inv_freq[i];
  const float theta_interp = freq_scale * theta_extrap;
  const float theta = theta_interp * (1.0f - ramp[i]) + theta_extrap * ramp[i];
  const float c = cos(theta) * mscale, s = sin(theta) * mscale;
  global float* v = x + (ulong)head * head_dim;
  const int a = neox ? i : 2 * i;
  const int b = neox ? i + n_pairs : 2 * i + 1;
  const float x0 = v[a], x1 = v[b];
  v[a] = x0 * c - x1 * s;
  v[b] = x0 * s + x1 * c;
}
