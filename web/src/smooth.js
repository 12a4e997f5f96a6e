// TensorBoard's smoothing: an exponential moving average debiased for its
// start, skipping non-finite values (they stay gaps).
export function smooth(values, weight) {
  if (weight <= 0) return values;
  const out = new Array(values.length);
  let last = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count++;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}
