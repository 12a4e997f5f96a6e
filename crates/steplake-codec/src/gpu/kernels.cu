// steplake-codec's GPU kernels, compiled at run time by NVRTC for the
// device's architecture (see gpu/device.rs). The same source is compiled by a
// host C++ compiler in tests/gpu_emulated.rs, where a shim runs each CUDA
// block as real threads with a barrier, so these kernels use only what both
// can run: __shared__ arrays, __syncthreads, atomicAdd/atomicOr, and no warp
// intrinsics or library functions.
//
// Conventions:
// - every kernel parameter is a 64-bit integer (an address or a count), so the
//   host launches every kernel the same way;
// - work comes as job tables of 64-bit words, one job per CUDA block;
// - blocks have THREADS threads.
//
// Data flows (host side in gpu/mod.rs):
//   steplake_split       values -> byte planes
//   steplake_histograms  one exact 256-bin histogram per Huffman stream segment
//   (host: plan_block per codec block, frame layout, code tables)
//   steplake_pack        Huffman bit-packing of each stream at its final offset
//   steplake_copy        raw blocks copied to their final offset
//   steplake_moments     per-chunk counts, sums and extremes of finite elements
//   steplake_second_pass per-chunk sum of squared deviations, 64-bin histogram

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define THREADS 256
#define HISTOGRAM_BINS 64

__device__ u64 min_u64(u64 a, u64 b) { return a < b ? a : b; }

// ---------------------------------------------------------------- planes

// Job (6 words): values address, planes address, elements in the tensor,
// first element of this job, elements in this job, bytes per element.
// planes[b * n + i] = values[i * width + b].
extern "C" __global__ void steplake_split(u64 jobs) {
    const u64* job = (const u64*)jobs + 6 * (u64)blockIdx.x;
    const u8* values = (const u8*)job[0];
    u8* planes = (u8*)job[1];
    u64 n = job[2], first = job[3], count = job[4], width = job[5];
    for (u64 i = first + threadIdx.x; i < first + count; i += blockDim.x) {
        const u8* value = values + i * width;
        for (u64 b = 0; b < width; b++) {
            planes[b * n + i] = value[b];
        }
    }
}

// Job (2 words): segment address, segment length. Writes 256 counts per job.
extern "C" __global__ void steplake_histograms(u64 jobs, u64 histograms) {
    __shared__ u32 counts[256];
    const u64* job = (const u64*)jobs + 2 * (u64)blockIdx.x;
    const u8* data = (const u8*)job[0];
    u64 len = job[1];
    for (u32 s = threadIdx.x; s < 256; s += blockDim.x) counts[s] = 0;
    __syncthreads();
    for (u64 i = threadIdx.x; i < len; i += blockDim.x) atomicAdd(&counts[data[i]], 1u);
    __syncthreads();
    u32* out = (u32*)histograms + 256 * (u64)blockIdx.x;
    for (u32 s = threadIdx.x; s < 256; s += blockDim.x) out[s] = counts[s];
}

// ---------------------------------------------------------------- Huffman

// Job (4 words): segment address, segment length, byte offset of its stream
// in the output, code table index. A table is 256 words `code | length << 16`.
//
// A zstd Huffman stream codes its bytes last to first, least significant bit
// first, then a single 1 bit (the end mark). Each thread codes a contiguous
// run of bytes; a suffix sum of the runs' bit counts places each run. Words
// shared with a neighbour (a run's first and last) are OR-ed atomically into
// the zeroed output; the words in between are stored.
extern "C" __global__ void steplake_pack(u64 jobs, u64 tables, u64 output) {
    __shared__ u32 table[256];
    __shared__ u64 offsets[THREADS];
    const u64* job = (const u64*)jobs + 4 * (u64)blockIdx.x;
    const u8* data = (const u8*)job[0];
    u64 len = job[1], stream = job[2];
    const u32* codes = (const u32*)tables + 256 * job[3];
    for (u32 s = threadIdx.x; s < 256; s += blockDim.x) table[s] = codes[s];
    __syncthreads();

    u64 per = (len + blockDim.x - 1) / blockDim.x;
    u64 start = min_u64(len, per * threadIdx.x);
    u64 end = min_u64(len, start + per);
    u64 bits = 0;
    for (u64 i = start; i < end; i++) bits += table[data[i]] >> 16;
    offsets[threadIdx.x] = bits;
    __syncthreads();
    if (threadIdx.x == 0) {
        // Later bytes come first in the stream: suffix sums.
        u64 below = 0;
        for (u32 t = blockDim.x; t-- > 0;) {
            u64 own = offsets[t];
            offsets[t] = below;
            below += own;
        }
    }
    __syncthreads();

    u32* out = (u32*)output;
    u64 position = stream * 8 + offsets[threadIdx.x];
    u64 word = position >> 5;
    u32 used = (u32)(position & 31);
    u64 container = 0;
    bool shared_word = true;  // the first word may hold a neighbour's bits
    for (u64 i = end; i > start; i--) {
        u32 entry = table[data[i - 1]];
        container |= (u64)(entry & 0xFFFF) << used;
        used += entry >> 16;
        if (used >= 32) {
            if (shared_word) atomicOr(&out[word], (u32)container);
            else out[word] = (u32)container;
            shared_word = false;
            word++;
            container >>= 32;
            used -= 32;
        }
    }
    if (threadIdx.x == 0) {
        container |= (u64)1 << used;  // the end mark follows byte 0
        used += 1;
    }
    if (used >= 32) {
        if (shared_word) atomicOr(&out[word], (u32)container);
        else out[word] = (u32)container;
        word++;
        container >>= 32;
        used -= 32;
    }
    if (used > 0) atomicOr(&out[word], (u32)container);
}

// Job (3 words): source address, length, byte offset in the output.
extern "C" __global__ void steplake_copy(u64 jobs, u64 output) {
    const u64* job = (const u64*)jobs + 3 * (u64)blockIdx.x;
    const u8* source = (const u8*)job[0];
    u64 len = job[1];
    u8* out = (u8*)output + job[2];
    for (u64 i = threadIdx.x; i < len; i += blockDim.x) out[i] = source[i];
}

// ---------------------------------------------------------------- statistics

// Element types, numbered as steplake_core::DType::ALL.
#define DT_F32 0
#define DT_BF16 1
#define DT_F16 2
#define DT_F64 3
#define DT_I8 4
#define DT_I16 5
#define DT_I32 6
#define DT_I64 7
#define DT_U8 8
#define DT_BOOL 9

// IEEE binary16 bits to binary32 bits, exactly (subnormals normalised).
__device__ u32 half_to_float_bits(u32 h) {
    u32 sign = (h & 0x8000u) << 16;
    u32 exponent = (h >> 10) & 0x1Fu;
    u32 mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return sign | 0x7F800000u | (mantissa << 13);
    if (exponent != 0) return sign | ((exponent + 112) << 23) | (mantissa << 13);
    if (mantissa == 0) return sign;
    u32 e = 113;
    while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        e--;
    }
    return sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
}

// Element i of a tensor of `dtype` as a double (the tensor is 8-byte aligned).
__device__ double element(const u8* values, u64 i, u32 dtype) {
    switch (dtype) {
        case DT_F32: return (double)__uint_as_float(((const u32*)values)[i]);
        case DT_BF16: return (double)__uint_as_float((u32)((const unsigned short*)values)[i] << 16);
        case DT_F16: return (double)__uint_as_float(half_to_float_bits(((const unsigned short*)values)[i]));
        case DT_F64: return __longlong_as_double(((const long long*)values)[i]);
        case DT_I8: return (double)((const signed char*)values)[i];
        case DT_I16: return (double)((const short*)values)[i];
        case DT_I32: return (double)((const int*)values)[i];
        case DT_I64: return (double)((const long long*)values)[i];
        default: return (double)values[i];
    }
}

__device__ bool is_nan(double x) { return x != x; }
__device__ bool is_finite(double x) { return x == x && x - x == 0.0; }

// Job (4 words): tensor address, first element, elements, dtype.
// Writes 8 words per job: count, nan, inf, zeros, then the bits of the
// doubles sum, sum of squares, min, max (finite elements only).
extern "C" __global__ void steplake_moments(u64 jobs, u64 moments) {
    __shared__ double sums[THREADS], squares[THREADS], mins[THREADS], maxs[THREADS];
    __shared__ u64 nans[THREADS], infs[THREADS], zeros[THREADS];
    const u64* job = (const u64*)jobs + 4 * (u64)blockIdx.x;
    const u8* values = (const u8*)job[0];
    u64 first = job[1], count = job[2];
    u32 dtype = (u32)job[3];
    double sum = 0.0, square = 0.0, lo = __longlong_as_double(0x7FF0000000000000LL),
           hi = __longlong_as_double((long long)0xFFF0000000000000ULL);
    u64 nan = 0, inf = 0, zero = 0;
    for (u64 i = first + threadIdx.x; i < first + count; i += blockDim.x) {
        double x = element(values, i, dtype);
        if (is_finite(x)) {
            sum += x;
            square += x * x;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
            zero += x == 0.0;
        } else if (is_nan(x)) {
            nan++;
        } else {
            inf++;
        }
    }
    u32 t = threadIdx.x;
    sums[t] = sum; squares[t] = square; mins[t] = lo; maxs[t] = hi;
    nans[t] = nan; infs[t] = inf; zeros[t] = zero;
    __syncthreads();
    for (u32 half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) {
            sums[t] += sums[t + half];
            squares[t] += squares[t + half];
            mins[t] = mins[t + half] < mins[t] ? mins[t + half] : mins[t];
            maxs[t] = maxs[t + half] > maxs[t] ? maxs[t + half] : maxs[t];
            nans[t] += nans[t + half];
            infs[t] += infs[t + half];
            zeros[t] += zeros[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        u64* out = (u64*)moments + 8 * (u64)blockIdx.x;
        out[0] = count;
        out[1] = nans[0];
        out[2] = infs[0];
        out[3] = zeros[0];
        out[4] = (u64)__double_as_longlong(sums[0]);
        out[5] = (u64)__double_as_longlong(squares[0]);
        out[6] = (u64)__double_as_longlong(mins[0]);
        out[7] = (u64)__double_as_longlong(maxs[0]);
    }
}

// Job (5 words): tensor address, first element, elements, dtype, tensor
// index. Tensor parameters (3 words each): bits of mean, min, bin scale.
// Writes the bits of Σ(x − mean)² per job, and adds to the tensor's 64 bins
// (bin ⌊(x − min) · scale⌋, the last one closed), finite elements only. The
// host compiles with FMA contraction off, so the bins are those of the CPU.
extern "C" __global__ void steplake_second_pass(u64 jobs, u64 parameters, u64 deviations,
                                                u64 histograms) {
    __shared__ double partial[THREADS];
    __shared__ u32 bins[HISTOGRAM_BINS];
    const u64* job = (const u64*)jobs + 5 * (u64)blockIdx.x;
    const u8* values = (const u8*)job[0];
    u64 first = job[1], count = job[2];
    u32 dtype = (u32)job[3];
    u64 tensor = job[4];
    const u64* parameter = (const u64*)parameters + 3 * tensor;
    double mean = __longlong_as_double((long long)parameter[0]);
    double lo = __longlong_as_double((long long)parameter[1]);
    double scale = __longlong_as_double((long long)parameter[2]);
    for (u32 b = threadIdx.x; b < HISTOGRAM_BINS; b += blockDim.x) bins[b] = 0;
    __syncthreads();
    double sum = 0.0;
    for (u64 i = first + threadIdx.x; i < first + count; i += blockDim.x) {
        double x = element(values, i, dtype);
        if (!is_finite(x)) continue;
        double d = x - mean;
        sum += d * d;
        double position = (x - lo) * scale;
        u64 bin = position > 0.0 ? (u64)position : 0;
        atomicAdd(&bins[bin < HISTOGRAM_BINS - 1 ? bin : HISTOGRAM_BINS - 1], 1u);
    }
    u32 t = threadIdx.x;
    partial[t] = sum;
    __syncthreads();
    for (u32 half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    if (t == 0) ((u64*)deviations)[blockIdx.x] = (u64)__double_as_longlong(partial[0]);
    u64* tensor_bins = (u64*)histograms + HISTOGRAM_BINS * tensor;
    for (u32 b = threadIdx.x; b < HISTOGRAM_BINS; b += blockDim.x) {
        if (bins[b] > 0) atomicAdd(&tensor_bins[b], (u64)bins[b]);
    }
}
