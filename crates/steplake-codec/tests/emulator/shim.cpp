// Runs steplake's CUDA kernels (src/gpu/kernels.cu, included below) on the
// host, so their logic is tested on machines with no GPU.
//
// Each CUDA block runs as THREADS real threads; __syncthreads is a barrier;
// __shared__ arrays are statics (blocks run one after another); atomics are
// real atomics. Launches run one at a time. Warp-synchronous code would not survive this, which is why
// the kernels use none.
#include <barrier>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct Dim3 {
    unsigned x, y, z;
};
static thread_local Dim3 threadIdx;
static Dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* block_barrier;

#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() block_barrier->arrive_and_wait()

static unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static unsigned atomicOr(unsigned* p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static double __longlong_as_double(long long u) {
    double d;
    std::memcpy(&d, &u, 8);
    return d;
}
static long long __double_as_longlong(double d) {
    long long u;
    std::memcpy(&u, &d, 8);
    return u;
}

#include "kernels.cu"

typedef unsigned long long Word;

template <typename Kernel>
static void run(unsigned grid, unsigned block, Kernel kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; b++) {
        blockIdx = {b, 0, 0};
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned t = 0; t < block; t++) {
            threads.emplace_back([t, &kernel] {
                threadIdx = {t, 0, 0};
                kernel();
            });
        }
        for (auto& thread : threads) thread.join();
    }
}

// Launches kernel `name` with 64-bit arguments; returns 0, or -1 for an
// unknown kernel or argument count.
extern "C" int steplake_emulate(const char* name, unsigned grid, unsigned block, const Word* a,
                                unsigned count) {
    // One launch at a time: the grid state and __shared__ arrays are global.
    static std::mutex launches;
    std::lock_guard<std::mutex> guard(launches);
    std::string kernel(name);
    if (kernel == "steplake_split" && count == 1) {
        run(grid, block, [=] { steplake_split(a[0]); });
    } else if (kernel == "steplake_histograms" && count == 2) {
        run(grid, block, [=] { steplake_histograms(a[0], a[1]); });
    } else if (kernel == "steplake_pack" && count == 3) {
        run(grid, block, [=] { steplake_pack(a[0], a[1], a[2]); });
    } else if (kernel == "steplake_copy" && count == 2) {
        run(grid, block, [=] { steplake_copy(a[0], a[1]); });
    } else if (kernel == "steplake_moments" && count == 2) {
        run(grid, block, [=] { steplake_moments(a[0], a[1]); });
    } else if (kernel == "steplake_second_pass" && count == 4) {
        run(grid, block, [=] { steplake_second_pass(a[0], a[1], a[2], a[3]); });
    } else {
        return -1;
    }
    return 0;
}
