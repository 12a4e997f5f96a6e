//! Real training snapshots for the tensor benchmarks, made here: a small
//! MLP (64 → 256 → 256 → 8, ReLU, 84,488 parameters) learns a random
//! teacher network's outputs by mean squared error, with Adam (lr 1e-3,
//! β 0.9 / 0.999), batches of 32 drawn from a seeded generator. The
//! weights and both Adam moments are kept at the steps asked for, so
//! snapshot-to-snapshot coding is measured on what training really does
//! to them, not on noise.

const SIZES: [usize; 4] = [64, 256, 256, 8];
const BATCH: usize = 32;
const LR: f32 = 1e-3;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// The parameters and Adam moments at one step, flattened.
pub(crate) struct Snapshot {
    pub(crate) step: usize,
    pub(crate) weights: Vec<f32>,
    pub(crate) adam_m: Vec<f32>,
    pub(crate) adam_v: Vec<f32>,
    pub(crate) loss: f32,
}

/// A seeded generator (SplitMix64) with normal draws.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// Dense layers: per layer, the offset of its weights (out × in, row-major)
/// and biases in the flat parameter vector.
fn layout(sizes: &[usize]) -> (Vec<(usize, usize)>, usize) {
    let mut offsets = Vec::new();
    let mut at = 0;
    for pair in sizes.windows(2) {
        offsets.push((at, at + pair[0] * pair[1]));
        at += pair[0] * pair[1] + pair[1];
    }
    (offsets, at)
}

/// He-initialised parameters of an MLP of `sizes`.
fn init(sizes: &[usize], rng: &mut Rng) -> Vec<f32> {
    let (offsets, total) = layout(sizes);
    let mut params = vec![0.0; total];
    for (l, pair) in sizes.windows(2).enumerate() {
        let scale = (2.0 / pair[0] as f32).sqrt();
        for w in &mut params[offsets[l].0..offsets[l].1] {
            *w = rng.normal() * scale;
        }
    }
    params
}

/// Every layer's activations for a batch (`x`: BATCH × sizes[0]), ReLU
/// between layers, none after the last.
fn forward(sizes: &[usize], params: &[f32], x: &[f32]) -> Vec<Vec<f32>> {
    let (offsets, _) = layout(sizes);
    let mut acts = vec![x.to_vec()];
    for (l, pair) in sizes.windows(2).enumerate() {
        let (n_in, n_out) = (pair[0], pair[1]);
        let (w, b) = (
            &params[offsets[l].0..offsets[l].1],
            &params[offsets[l].1..offsets[l].1 + n_out],
        );
        let input = &acts[l];
        let mut out = vec![0.0; BATCH * n_out];
        for s in 0..BATCH {
            let row = &input[s * n_in..(s + 1) * n_in];
            for o in 0..n_out {
                let weights = &w[o * n_in..(o + 1) * n_in];
                let mut sum = b[o];
                for (a, c) in weights.iter().zip(row) {
                    sum += a * c;
                }
                out[s * n_out + o] = if l + 2 < sizes.len() {
                    sum.max(0.0)
                } else {
                    sum
                };
            }
        }
        acts.push(out);
    }
    acts
}

/// Trains the student for `steps` steps; returns the snapshots taken after
/// each step in `keep` (in step order).
pub(crate) fn train(steps: usize, keep: &[usize]) -> Vec<Snapshot> {
    let mut rng = Rng(20_26_12_07);
    let teacher_sizes = [64, 32, 8];
    let teacher = init(&teacher_sizes, &mut rng);
    let mut params = init(&SIZES, &mut rng);
    let (offsets, total) = layout(&SIZES);
    let (mut m, mut v) = (vec![0.0f32; total], vec![0.0f32; total]);
    let mut snapshots = Vec::new();
    for step in 1..=steps {
        let x: Vec<f32> = (0..BATCH * SIZES[0]).map(|_| rng.normal()).collect();
        let target = forward(&teacher_sizes, &teacher, &x)
            .pop()
            .unwrap_or_default();
        let acts = forward(&SIZES, &params, &x);
        let out = &acts[SIZES.len() - 1];
        let n_out = SIZES[SIZES.len() - 1];
        let mut loss = 0.0;
        // dL/d(output) of the mean squared error.
        let mut delta: Vec<f32> = out
            .iter()
            .zip(&target)
            .map(|(o, t)| {
                loss += (o - t) * (o - t);
                2.0 * (o - t) / (BATCH * n_out) as f32
            })
            .collect();
        loss /= (BATCH * n_out) as f32;
        let mut grad = vec![0.0f32; total];
        for l in (0..SIZES.len() - 1).rev() {
            let (n_in, n_out) = (SIZES[l], SIZES[l + 1]);
            let (w_at, b_at) = offsets[l];
            let input = &acts[l];
            let mut back = vec![0.0f32; BATCH * n_in];
            for s in 0..BATCH {
                for o in 0..n_out {
                    let d = delta[s * n_out + o];
                    if d == 0.0 {
                        continue;
                    }
                    grad[b_at + o] += d;
                    let row = &input[s * n_in..(s + 1) * n_in];
                    let w = &params[w_at + o * n_in..w_at + (o + 1) * n_in];
                    let g = &mut grad[w_at + o * n_in..w_at + (o + 1) * n_in];
                    for i in 0..n_in {
                        g[i] += d * row[i];
                        back[s * n_in + i] += d * w[i];
                    }
                }
            }
            // Through the ReLU of the layer below.
            for (b, a) in back.iter_mut().zip(input) {
                if *a <= 0.0 {
                    *b = 0.0;
                }
            }
            delta = back;
        }
        let t = step as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for i in 0..total {
            m[i] = BETA1 * m[i] + (1.0 - BETA1) * grad[i];
            v[i] = BETA2 * v[i] + (1.0 - BETA2) * grad[i] * grad[i];
            params[i] -= LR * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
        }
        if keep.contains(&step) {
            snapshots.push(Snapshot {
                step,
                weights: params.clone(),
                adam_m: m.clone(),
                adam_v: v.clone(),
                loss,
            });
        }
    }
    snapshots
}
