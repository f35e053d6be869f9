// Issue 6: the vector kernel of fattn-se.cu (patch 0003, or a variant of it) on its own, without building llama.cpp:
// this file includes fattn-se.cu and launches flash_attn_ext_se_vec as fattn_se_launch_vec does (the same key splits
// and combine), on random f16 K/V of one sequence, one query.
//
// For each case: the largest error against a float64 host reference of Algorithm 1 (NORM or NEOX pairs, the query's and
// the grouped keys' rotations, one softmax over the merged scores) on the first heads, the kernel's time per launch
// (CUDA events, after warm-up), and the time of a plain kernel that reads the same K and V bytes once (the memory
// bound on this GPU). No stock kernel runs here: compare with se-backend-check's stock times of the same shape.
//
// Build and run on the device: bench/cuda_vec_probe.sh (the patched tree, the defines, a non-PIE link that leaves the
// rest of ggml-cuda out: fattn-se.cu's host functions that call into it are never called here).
// Args: [--reps N] [--splits N,N,...] [--mask]: also time each case with these key splits instead of the launcher's;
// --mask: pass a mask row (all zeros, as se-backend-check's one-query cases) as the op does; --stock-vec: instead,
// llama.cpp's vector kernel with Self-Extend (fattn-vec.cuh) against the same reference and against itself without the
// branch-free steps and stock's kernel, in one run (probe_stock_vec_run); there --splits times both kernels with
// the given key splits

#include "fattn-se.cu"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#define PROBE_CHECK(x)                                                                        \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

// one case: head size, query heads, KV heads, keys, Self-Extend G and W, NEOX pairs
// --splits: key split counts timed besides the launcher's own
static std::vector<int> g_splits;
static bool g_mask = false;

struct probe_case {
    const char * name;
    int D, n_head, n_head_kv, n_kv, G, W, neox;
};

// uniform in [-2, 2) from a 64-bit LCG (a billion values: a normal distribution would take tens of seconds)
struct probe_lcg {
    uint64_t st = 1234;
    float operator()() {
        st = st*6364136223846793005ull + 1442695040888963407ull;
        return (float) (st >> 40)*(4.0f/16777216.0f) - 2.0f;
    }
};

// the op's Self-Extend parameters for case c (freq_base 10000, all dimensions rotated, positions on the device)
static fattn_se_params probe_params(const probe_case & c, const int D, const int * dpq, const int * dpk) {
    fattn_se_params p;
    memset(&p, 0, sizeof(p));
    p.n_group     = c.G;
    p.n_window    = c.W;
    p.pos_min     = 0;
    p.n_dims      = D;
    p.neox        = c.neox;
    p.freq_base   = 10000.0f;
    p.freq_scale  = 1.0f;
    p.theta_scale = std::pow(10000.0, -2.0/D);
    p.pos_q       = dpq;
    p.pos_k       = dpk;
    p.vec_tail    = 1;
    return p;
}

// mean time of one call of f in µs (CUDA events, reps calls after 3 untimed)
template <typename F>
static double probe_time_us(F && f, const int reps) {
    cudaEvent_t e0, e1;
    PROBE_CHECK(cudaEventCreate(&e0));
    PROBE_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) {
        f();
    }
    PROBE_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < reps; ++i) {
        f();
    }
    PROBE_CHECK(cudaEventRecord(e1));
    PROBE_CHECK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    PROBE_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 1000.0*ms/reps;
}

// reads n bytes once (the memory bound for a kernel that reads K and V once)
static __global__ void probe_read(const uint4 * __restrict__ x, const size_t n, unsigned * __restrict__ out) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x*(size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x*blockDim.x) {
        const uint4 v = x[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) {
        out[0] = acc; // never in practice: keeps the loads
    }
}

// Algorithm 1 for one query head in float64: scores with the neighbor positions where pq - pk < W, else with the grouped
// ones (key at floor(pk/G), query at floor(pq/G) + W - W/G), merged before one softmax
// (Kv, Vv: the value of element i of key j of KV head hk, as double)
template <typename KV, typename VV>
static void probe_reference(const probe_case & c, const float * q, KV Kv, VV Vv, const int pq,
                            const int * pk, const int h, const float scale, const double theta_scale, double * out) {
    const int D = c.D, hk = h/(c.n_head/c.n_head_kv);
    auto rot = [&](std::vector<double> & x, const int delta) {
        for (int d = 0; d < D/2; ++d) {
            const double a  = delta*std::pow(theta_scale, d);
            const int    i0 = c.neox ? d : 2*d;
            const int    i1 = c.neox ? d + D/2 : 2*d + 1;
            const double x0 = x[i0], x1 = x[i1];
            x[i0] = x0*std::cos(a) - x1*std::sin(a);
            x[i1] = x0*std::sin(a) + x1*std::cos(a);
        }
    };
    auto fdiv = [](const int a, const int b) { return a >= 0 ? a/b : -((-a + b - 1)/b); };
    std::vector<double> qn(D), qg(D), kj(D);
    for (int i = 0; i < D; ++i) {
        qn[i] = q[h*D + i]*(double) scale;
    }
    qg = qn;
    rot(qg, fdiv(pq, c.G) + c.W - c.W/c.G - pq);
    std::vector<double> s(c.n_kv);
    double mx = -1e300;
    for (int j = 0; j < c.n_kv; ++j) {
        for (int i = 0; i < D; ++i) {
            kj[i] = Kv(hk, j, i);
        }
        const bool g = pq - pk[j] >= c.W;
        if (g) {
            rot(kj, fdiv(pk[j], c.G) - pk[j]);
        }
        double acc = 0.0;
        for (int i = 0; i < D; ++i) {
            acc += (g ? qg[i] : qn[i])*kj[i];
        }
        s[j] = acc;
        mx   = std::max(mx, acc);
    }
    double den = 0.0;
    for (int i = 0; i < D; ++i) {
        out[i] = 0.0;
    }
    for (int j = 0; j < c.n_kv; ++j) {
        const double p = std::exp(s[j] - mx);
        den += p;
        for (int i = 0; i < D; ++i) {
            out[i] += p*Vv(hk, j, i);
        }
    }
    for (int i = 0; i < D; ++i) {
        out[i] /= den;
    }
}

// the heads each case checks: the first two and the last (another KV head)
static std::vector<int> probe_heads(const probe_case & c) {
    return {0, 1, c.n_head - 1};
}

// the float64 reference of each of probe_heads(c), D values each, one after the other (Kv, Vv: as probe_reference)
template <typename KV, typename VV>
static std::vector<double> probe_refs(const probe_case & c, const float * q, KV Kv, VV Vv, const int pq, const int * pk,
                                      const float scale, const double theta_scale) {
    const std::vector<int> heads = probe_heads(c);
    std::vector<double> ref(heads.size()*c.D);
    for (size_t ih = 0; ih < heads.size(); ++ih) {
        probe_reference(c, q, Kv, Vv, pq, pk, heads[ih], scale, theta_scale, ref.data() + ih*c.D);
    }
    return ref;
}

// the largest absolute error and the relative L2 error of out ([n_head, D]) against probe_refs on probe_heads(c)
static std::pair<double, double> probe_errors(const probe_case & c, const float * out, const std::vector<double> & ref) {
    const std::vector<int> heads = probe_heads(c);
    double max_abs = 0.0, num = 0.0, den = 0.0;
    for (size_t ih = 0; ih < heads.size(); ++ih) {
        for (int i = 0; i < c.D; ++i) {
            const double r = ref[ih*c.D + i];
            const double e = out[(size_t) heads[ih]*c.D + i] - r;
            max_abs = std::max(max_abs, std::fabs(e));
            num += e*e;
            den += r*r;
        }
    }
    return {max_abs, std::sqrt(num/den)};
}

// a mask row of zeros on the device (every key visible, the reference unchanged) with --mask, else nullptr
static half * probe_mask_row(const int n_kv) {
    half * dmask = nullptr;
    if (g_mask) {
        PROBE_CHECK(cudaMalloc(&dmask, (size_t) n_kv*sizeof(half)));
        PROBE_CHECK(cudaMemset(dmask, 0, (size_t) n_kv*sizeof(half)));
    }
    return dmask;
}

// the keys at positions 0 .. n_kv - 1 (the query is at n_kv)
static std::vector<int> probe_positions(const int n_kv) {
    std::vector<int> pk(n_kv);
    for (int j = 0; j < n_kv; ++j) {
        pk[j] = j;
    }
    return pk;
}

template <int D, int NCOLS>
static void probe_run(const probe_case & c, const int reps, const int nsm) {
    const auto kernel = flash_attn_ext_se_vec<D, NCOLS, GGML_TYPE_F16, GGML_TYPE_F16>;
    constexpr int NT = FATTN_SE_NWARPS*WARP_SIZE;
    constexpr int NG = FATTN_SE_NWARPS*(WARP_SIZE/fattn_se_vec_lk(D));
    const int gqa = c.n_head/c.n_head_kv;

    // inputs: Q [D, 1, n_head] f32, K/V [D, n_kv, n_head_kv] f16, positions 0 .. n_kv - 1, the query at n_kv
    probe_lcg rnd;
    std::vector<float> q((size_t) D*c.n_head);
    std::vector<half>  k((size_t) D*c.n_kv*c.n_head_kv), v(k.size());
    for (auto & x : q) { x = rnd(); }
    for (auto & x : k) { x = __float2half(rnd()); }
    for (auto & x : v) { x = __float2half(rnd()); }
    const std::vector<int> pk = probe_positions(c.n_kv);
    const int pq = c.n_kv;

    float * dq; half * dk; half * dv; int * dpq; int * dpk; float * dout; float * dparts; float2 * dmeta; unsigned * dsink;
    PROBE_CHECK(cudaMalloc(&dq, q.size()*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dk, k.size()*sizeof(half)));
    PROBE_CHECK(cudaMalloc(&dv, v.size()*sizeof(half)));
    PROBE_CHECK(cudaMalloc(&dpq, sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dpk, pk.size()*sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dout, (size_t) D*c.n_head*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dsink, sizeof(unsigned)));
    half * dmask = probe_mask_row(c.n_kv);
    PROBE_CHECK(cudaMemcpy(dq, q.data(), q.size()*sizeof(float), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dk, k.data(), k.size()*sizeof(half), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dv, v.data(), v.size()*sizeof(half), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpq, &pq, sizeof(int), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpk, pk.data(), pk.size()*sizeof(int), cudaMemcpyHostToDevice));

    const fattn_se_params p = probe_params(c, D, dpq, dpk);
    const float scale = 1.0f/std::sqrt((float) D);

    // the launch of fattn_se_launch_vec
    int occupancy = 1;
    PROBE_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, kernel, NT, 0));
    const int nblocks = c.n_head/NCOLS;
    int kv_per_split = 0;
    const int nsplit = fattn_se_vec_splits(c.n_kv, nblocks, occupancy, nsm, NG, kv_per_split);
    PROBE_CHECK(cudaMalloc(&dparts, (size_t) 256*D*c.n_head*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dmeta, (size_t) 256*c.n_head*sizeof(float2)));

    const size_t nb11 = D*sizeof(half), nb12 = nb11*c.n_kv;
    auto launch_with = [&](const int nsplit, const int kv_per_split, const bool c8 = false) {
        (c8 ? flash_attn_ext_se_vec<D, NCOLS, GGML_TYPE_F16, GGML_TYPE_F16, 8> : kernel)
            <<<dim3(nblocks, nsplit, 1), dim3(WARP_SIZE, FATTN_SE_NWARPS, 1)>>>(
            (const char *) dq, (const char *) dk, (const char *) dv, dmask, dpq, dpk,
            nsplit > 1 ? dparts : dout, dmeta, p, scale, 0.0f, c.n_head, gqa, c.n_kv, kv_per_split,
            (int64_t) D*sizeof(float), (int64_t) D*c.n_head*sizeof(float), nb11, nb12, nb12*c.n_head_kv,
            nb11, nb12, nb12*c.n_head_kv, 0, 1, 1, c.n_kv);
        if (nsplit > 1) {
            flash_attn_ext_se_combine<D><<<c.n_head, D>>>(dparts, dmeta, dout, nsplit);
        }
    };
    auto launch = [&]() { launch_with(nsplit, kv_per_split); };
    launch();
    PROBE_CHECK(cudaGetLastError());
    PROBE_CHECK(cudaDeviceSynchronize());

    // exactness on the first heads (and the last, another KV head)
    std::vector<float> out((size_t) D*c.n_head);
    PROBE_CHECK(cudaMemcpy(out.data(), dout, out.size()*sizeof(float), cudaMemcpyDeviceToHost));
    const std::vector<double> ref = probe_refs(c, q.data(),
        [&](int hk, int j, int i) { return (double) __half2float(k[((size_t) hk*c.n_kv + j)*D + i]); },
        [&](int hk, int j, int i) { return (double) __half2float(v[((size_t) hk*c.n_kv + j)*D + i]); },
        pq, pk.data(), scale, p.theta_scale);
    const auto [max_abs, rel_l2] = probe_errors(c, out.data(), ref);

    // timing: the kernel (+ combine), then a plain read of the same K and V bytes
    auto time_us = [&](auto && f) { return probe_time_us(f, reps); };
    const double t_se = time_us(launch);
    const size_t kv_bytes = 2*k.size()*sizeof(half);
    // K and V lie in two allocations: read each
    const double t_read = time_us([&]() {
        probe_read<<<4*nsm, 512>>>((const uint4 *) dk, k.size()*sizeof(half)/16, dsink);
        probe_read<<<4*nsm, 512>>>((const uint4 *) dv, v.size()*sizeof(half)/16, dsink);
    });
    PROBE_CHECK(cudaGetLastError());
    // the same with 8 keys a step in flight per group instead of 4 (the kernel's template parameter C), and with other
    // key splits (clamped and padded as the launcher does); outputs compared with the default's
    auto diff_to_default = [&]() {
        std::vector<float> o2(out.size());
        PROBE_CHECK(cudaMemcpy(o2.data(), dout, o2.size()*sizeof(float), cudaMemcpyDeviceToHost));
        double d = 0.0;
        for (size_t i = 0; i < o2.size(); ++i) {
            d = std::max(d, (double) std::fabs(o2[i] - out[i]));
        }
        return d;
    };
    const double t_c8 = time_us([&]() { launch_with(nsplit, kv_per_split, true); });
    const double d_c8 = diff_to_default();
    printf("    8 keys a step: %.1f us (max diff to the default's output %.1e)\n", t_c8, d_c8);
    std::string alt;
    for (const int want : g_splits) {
        int kps = 0;
        const int ns = fattn_se_vec_splits(c.n_kv, nblocks, occupancy, nsm, NG, kps, want);
        const double t = time_us([&]() { launch_with(ns, kps); });
        const double d = diff_to_default();
        char buf[128];
        snprintf(buf, sizeof(buf), "%s\"%d\": [%.2f, %.1e]", alt.empty() ? "" : ", ", ns, t, d);
        alt += buf;
        printf("    %d splits: %.1f us (max diff to the default's output %.1e)\n", ns, t, d);
    }

    printf("%-34s %6d %3d/%-3d %4d/%-5d %6d %8.3e %8.3e %9.1f %7.0f %9.1f %7.0f\n", c.name, c.n_kv, c.n_head, c.n_head_kv,
           c.G, c.W, nsplit, max_abs, rel_l2, t_se, kv_bytes/t_se/1e3, t_read, kv_bytes/t_read/1e3);
    printf("{\"probe\": \"se_vec\", \"shape\": \"%s\", \"D\": %d, \"n_head\": %d, \"n_head_kv\": %d, \"n_kv\": %d, "
           "\"G\": %d, \"W\": %d, \"neox\": %d, \"nsplit\": %d, \"occupancy\": %d, \"max_abs\": %.4e, \"rel_l2\": %.4e, "
           "\"se_vec_us\": %.2f, \"read_us\": %.2f, \"kv_bytes\": %zu, \"c8_us_diff\": [%.2f, %.1e], "
           "\"splits_us_diff\": {%s}, \"mask\": %d}\n", c.name, D, c.n_head, c.n_head_kv, c.n_kv, c.G, c.W, c.neox, nsplit,
           occupancy, max_abs, rel_l2, t_se, t_read, kv_bytes, t_c8, d_c8, alt.c_str(), (int) g_mask);

    cudaFree(dq); cudaFree(dk); cudaFree(dv); cudaFree(dpq); cudaFree(dpk); cudaFree(dout); cudaFree(dparts);
    cudaFree(dmeta); cudaFree(dsink); cudaFree(dmask);
}

// llama.cpp's vector kernel with Self-Extend (fattn-vec.cuh, se_mode: the instances fattn_se_launch_stock_vec picks) on
// one query, launched as launch_fattn launches it (key splits from occupancy and waves, then flash_attn_combine_results),
// f16 or q8_0 K/V (random values, q8_0 quantized here). Three runs on the same data: Self-Extend with the branch-free
// steps (se.vec_tail = 1, the default), without them (0: every key through the general step, GGML_CUDA_SE_VEC=notail),
// and the stock kernel (se_mode 0). Printed: each time, the errors of both Self-Extend runs against the float64
// Algorithm 1 (three heads), and the largest difference between their outputs (the same arithmetic: 0 expected).
template <int D, ggml_type type_KV, int se_mode>
static void probe_stock_vec_run(const probe_case & c, const int reps, const int nsm) {
    static_assert(type_KV == GGML_TYPE_F16 || type_KV == GGML_TYPE_Q8_0, "f16 or q8_0");
    GGML_ASSERT(c.D == D && (se_mode == 2) == (c.neox != 0) && c.n_kv % FATTN_KQ_STRIDE == 0);
    constexpr bool q8 = type_KV == GGML_TYPE_Q8_0;
    const size_t n_kv_el = (size_t) D*c.n_kv*c.n_head_kv;

    probe_lcg rnd;
    std::vector<float> q((size_t) D*c.n_head), kf(n_kv_el), vf(n_kv_el);
    for (auto & x : q)  { x = rnd(); }
    for (auto & x : kf) { x = rnd(); }
    for (auto & x : vf) { x = rnd(); }
    // the bytes of K and V, and the values the kernel sees (f16-rounded, or q8_0 blocks of 32 dequantized)
    std::vector<char> kb(q8 ? n_kv_el/QK8_0*sizeof(block_q8_0) : n_kv_el*sizeof(half)), vb(kb.size());
    auto store = [&](std::vector<float> & x, std::vector<char> & b) {
        if constexpr (q8) {
            block_q8_0 * blk = (block_q8_0 *) b.data();
            for (size_t ib = 0; ib < n_kv_el/QK8_0; ++ib) {
                float amax = 0.0f;
                for (int l = 0; l < QK8_0; ++l) {
                    amax = std::max(amax, std::fabs(x[ib*QK8_0 + l]));
                }
                const float d = amax/127.0f;
                blk[ib].d = __float2half(d);
                const float dh = __half2float(blk[ib].d);
                for (int l = 0; l < QK8_0; ++l) {
                    const int qv = d == 0.0f ? 0 : (int) std::lround(x[ib*QK8_0 + l]/d);
                    blk[ib].qs[l] = (int8_t) std::max(-127, std::min(127, qv));
                    x[ib*QK8_0 + l] = dh*blk[ib].qs[l];
                }
            }
        } else {
            half * h = (half *) b.data();
            for (size_t i = 0; i < n_kv_el; ++i) {
                h[i] = __float2half(x[i]);
                x[i] = __half2float(h[i]);
            }
        }
    };
    store(kf, kb);
    store(vf, vb);
    const std::vector<int> pk = probe_positions(c.n_kv);
    const int pq = c.n_kv;

    char * dk; char * dv; float * dq; int * dpq; int * dpk; float * dout; float * dtmp; float2 * dmeta;
    PROBE_CHECK(cudaMalloc(&dk, kb.size()));
    PROBE_CHECK(cudaMalloc(&dv, vb.size()));
    PROBE_CHECK(cudaMalloc(&dq, q.size()*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dpq, sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dpk, pk.size()*sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dout, (size_t) D*c.n_head*sizeof(float)));
    PROBE_CHECK(cudaMemcpy(dk, kb.data(), kb.size(), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dv, vb.data(), vb.size(), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dq, q.data(), q.size()*sizeof(float), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpq, &pq, sizeof(int), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpk, pk.data(), pk.size()*sizeof(int), cudaMemcpyHostToDevice));
    half * dmask = probe_mask_row(c.n_kv);
    const float scale = 1.0f/std::sqrt((float) D);
    fattn_se_params p = probe_params(c, D, dpq, dpk);

    // launch_fattn's split of the keys over blocks (not stream-k; key tiles of nbatch_fa = D), per kernel
    const int nb11 = (int) (kb.size()/((size_t) c.n_kv*c.n_head_kv));
    const int nb12 = nb11*c.n_kv;
    constexpr int nthreads = 128;
    const int ntiles_KV = (c.n_kv + D - 1)/D;
    auto splits_of = [&](const int want) { return std::max(1, std::min(want, ntiles_KV)); }; // --splits, as launchable
    auto parallel_blocks_of = [&](auto kernel) {
        int max_blocks_per_sm = 1;
        PROBE_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&max_blocks_per_sm, kernel, nthreads, 0));
        const int ntiles_dst = c.n_head;
        const int blocks_per_wave = nsm*max_blocks_per_sm;
        int parallel_blocks = std::min(max_blocks_per_sm, ntiles_KV);
        int nwaves_best = 0, efficiency_best = 0;
        for (int pb = parallel_blocks; pb <= ntiles_KV; ++pb) {
            const int nblocks = ntiles_dst*pb;
            const int nwaves = (nblocks + blocks_per_wave - 1)/blocks_per_wave;
            const int efficiency = 100*nblocks/(nwaves*blocks_per_wave);
            if (efficiency_best >= 95 && nwaves > nwaves_best) {
                break;
            }
            if (efficiency > efficiency_best) {
                nwaves_best = nwaves;
                efficiency_best = efficiency;
                parallel_blocks = pb;
            }
        }
        return parallel_blocks;
    };
    const auto k_se    = flash_attn_ext_vec<D, 1, type_KV, type_KV, false, se_mode>;
    const auto k_stock = flash_attn_ext_vec<D, 1, type_KV, type_KV, false, 0>;
    const int pb_se = parallel_blocks_of(k_se), pb_stock = parallel_blocks_of(k_stock);
    int pb_max = std::max(pb_se, pb_stock);
    for (const int want : g_splits) {
        pb_max = std::max(pb_max, splits_of(want));
    }
    PROBE_CHECK(cudaMalloc(&dtmp, (size_t) pb_max*D*c.n_head*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dmeta, (size_t) pb_max*c.n_head*sizeof(float2)));
    const uint32_t n_head_log2 = 1u << uint32_t(floorf(log2f(float(c.n_head))));
    auto launch = [&](auto kernel, const int pb) {
        kernel<<<dim3(1, pb, c.n_head), dim3(WARP_SIZE, nthreads/WARP_SIZE, 1)>>>(
            (const char *) dq, dk, dv, (const char *) dmask, nullptr, nullptr, pb > 1 ? dtmp : dout, dmeta,
            scale, 0.0f, 1.0f, 1.0f, n_head_log2, 0.0f,
            D, init_fastdiv_values(1), c.n_head, 1, D*(int) sizeof(float), D*(int) sizeof(float), D*(int) sizeof(float)*c.n_head,
            D, c.n_kv, c.n_head_kv, 1, nb11, nb12, (int64_t) nb12*c.n_head_kv,
            nb11, nb12, (int64_t) nb12*c.n_head_kv,
            dmask ? 1 : 0, dmask ? 1 : 0, dmask ? 1 : 0, dmask ? c.n_kv*(int) sizeof(half) : 0, 0, 0, p);
        if (pb > 1) {
            flash_attn_combine_results<D><<<dim3(1, c.n_head, 1), dim3(D, 1, 1), pb*sizeof(float2)>>>(dtmp, dmeta, dout, pb);
        }
    };

    const std::vector<double> ref = probe_refs(c, q.data(),
        [&](int hk, int j, int i) { return (double) kf[((size_t) hk*c.n_kv + j)*D + i]; },
        [&](int hk, int j, int i) { return (double) vf[((size_t) hk*c.n_kv + j)*D + i]; },
        pq, pk.data(), scale, p.theta_scale);
    std::vector<float> out[2];
    double max_abs[2] = {0.0, 0.0}, rel[2] = {0.0, 0.0}, t[3];
    for (int tail = 1; tail >= 0; --tail) {
        p.vec_tail = tail;
        launch(k_se, pb_se);
        PROBE_CHECK(cudaGetLastError());
        PROBE_CHECK(cudaDeviceSynchronize());
        auto & o = out[1 - tail];
        o.resize((size_t) D*c.n_head);
        PROBE_CHECK(cudaMemcpy(o.data(), dout, o.size()*sizeof(float), cudaMemcpyDeviceToHost));
        std::tie(max_abs[1 - tail], rel[1 - tail]) = probe_errors(c, o.data(), ref);
        t[1 - tail] = probe_time_us([&]() { launch(k_se, pb_se); }, reps);
    }
    double diff = 0.0;
    for (size_t i = 0; i < out[0].size(); ++i) {
        diff = std::max(diff, (double) std::fabs(out[0][i] - out[1][i]));
    }
    t[2] = probe_time_us([&]() { launch(k_stock, pb_stock); }, reps);
    PROBE_CHECK(cudaGetLastError());
    // --splits: both kernels with these key splits instead of launch_fattn's (Self-Extend with the branch-free steps)
    p.vec_tail = 1;
    std::string splits_json;
    for (const int want : g_splits) {
        const int pb = splits_of(want);
        const double ts = probe_time_us([&]() { launch(k_se, pb); }, reps);
        const double tk = probe_time_us([&]() { launch(k_stock, pb); }, reps);
        PROBE_CHECK(cudaGetLastError());
        printf("    %d splits: SE %.1f us, stock %.1f us\n", pb, ts, tk);
        splits_json += (splits_json.empty() ? "" : ", ") + ("\"" + std::to_string(pb) + "\": [" + std::to_string(ts) + ", " +
                        std::to_string(tk) + "]");
    }

    printf("%-30s %4s %6d %3d/%-3d %2d/%-5d %3d/%-3d %8.2e %8.2e %8.2e %8.2e %7.1e %8.1f %8.1f %8.1f %6.3f %6.3f\n", c.name,
           q8 ? "q8_0" : "f16", c.n_kv, c.n_head, c.n_head_kv, c.G, c.W, pb_se, pb_stock, max_abs[0], rel[0], max_abs[1], rel[1],
           diff, t[0], t[1], t[2], t[2]/t[0], t[2]/t[1]);
    printf("{\"probe\": \"stock_vec\", \"shape\": \"%s\", \"D\": %d, \"type_kv\": \"%s\", \"se_mode\": %d, \"n_head\": %d, "
           "\"n_head_kv\": %d, \"n_kv\": %d, \"G\": %d, \"W\": %d, \"neox\": %d, \"splits_se\": %d, \"splits_stock\": %d, "
           "\"tail_max_abs\": %.4e, \"tail_rel_l2\": %.4e, \"notail_max_abs\": %.4e, \"notail_rel_l2\": %.4e, "
           "\"tail_vs_notail_max_diff\": %.3e, \"tail_us\": %.2f, \"notail_us\": %.2f, \"stock_us\": %.2f, \"mask\": %d, "
           "\"splits_se_stock_us\": {%s}}\n",
           c.name, D, q8 ? "q8_0" : "f16", se_mode, c.n_head, c.n_head_kv, c.n_kv, c.G, c.W, c.neox, pb_se, pb_stock,
           max_abs[0], rel[0], max_abs[1], rel[1], diff, t[0], t[1], t[2], (int) g_mask, splits_json.c_str());

    cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dpq); cudaFree(dpk); cudaFree(dout); cudaFree(dtmp); cudaFree(dmeta);
    cudaFree(dmask);
}

int main(int argc, char ** argv) {
    int reps = 20;
    bool stock_vec = false;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--splits") && i + 1 < argc) {
            for (char * t = strtok(argv[++i], ","); t; t = strtok(nullptr, ",")) {
                g_splits.push_back(atoi(t));
            }
        } else if (!strcmp(argv[i], "--mask")) {
            g_mask = true;
        } else if (!strcmp(argv[i], "--stock-vec")) {
            stock_vec = true;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--splits N,N,...] [--mask] [--stock-vec]\n", argv[0]);
            return 1;
        }
    }
    cudaDeviceProp prop;
    PROBE_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("GPU: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    const int nsm = prop.multiProcessorCount;
    if (stock_vec) {
        // the instances of llama.cpp's vector kernel with Self-Extend that fattn_se_launch_stock_vec picks: SmolLM2 (64,
        // f16, factors in registers), the Llama-2 shape (128, q8_0 with the factors in shared memory, NORM and NEOX; f16
        // in registers), the Llama-3 shape's q8_0 (GQA 4); G 8 (every key after a lane group's first steps) and G 6
        // (the select path); the Llama-3 shape's q8_0 also at 32k and 64k, where the op takes the mma kernel
        printf("%-30s %4s %6s %7s %8s %7s %8s %8s %8s %8s %7s %8s %8s %8s %6s %6s\n", "shape", "K/V", "kv", "heads", "G/W",
               "splits", "tail_abs", "tail_rel", "old_abs", "old_rel", "tail-old", "tail_us", "old_us", "stock_us",
               "ratio", "old");
        for (int kv : {4096, 16384, 65536}) {
            probe_stock_vec_run< 64, GGML_TYPE_F16,  3>({"smollm2 (D64, 9/3)",        64,  9,  3, kv, 8, 1024, 0}, reps, nsm);
            probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama2-7b (D128, 32/32)",  128, 32, 32, kv, 8, 1024, 0}, reps, nsm);
        }
        probe_stock_vec_run< 64, GGML_TYPE_F16,  3>({"smollm2 (D64, 9/3)",           64,  9,  3, 16384, 6, 1024, 0}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama2-7b (D128, 32/32)",     128, 32, 32, 16384, 6, 1000, 0}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 2>({"llama2-7b (D128, 32/32) NEOX", 128, 32, 32, 16384, 8, 1024, 1}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_F16,  3>({"llama2-7b (D128, 32/32)",     128, 32, 32, 16384, 8, 1024, 0}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama3-8b (D128, 32/8)",      128, 32,  8,  4096, 8, 1024, 0}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama3-8b (D128, 32/8)",      128, 32,  8, 16384, 8, 1024, 0}, reps, nsm);
        // from 32k the op takes the mma kernel for this shape (on an f16 copy of the cache): this kernel there
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama3-8b (D128, 32/8)",      128, 32,  8, 32768, 8, 1024, 0}, reps, nsm);
        probe_stock_vec_run<128, GGML_TYPE_Q8_0, 1>({"llama3-8b (D128, 32/8)",      128, 32,  8, 65536, 8, 1024, 0}, reps, nsm);
        return 0;
    }
    printf("%-34s %6s %7s %10s %6s %8s %8s %9s %7s %9s %7s\n", "shape", "kv", "heads", "G/W", "splits", "max_abs",
           "rel_l2", "se_us", "GB/s", "read_us", "GB/s");
    for (int kv : {4096, 16384, 32768, 65536}) {
        // Phi-3-mini heads (head size 96, MHA, NEOX), then Llama-2-7B heads (head size 128, MHA): the
        // same kernel where llama.cpp's vector kernel with Self-Extend runs by default (0.97 - 1.01x of stock)
        probe_run< 96, 1>({"phi-3-mini (D96, 32/32, NEOX)", 96, 32, 32, kv, 8, 1024, 1}, reps, nsm);
        probe_run<128, 1>({"llama2-7b (D128, 32/32)",       128, 32, 32, kv, 8, 1024, 0}, reps, nsm);
    }
    // a GQA case at 96 (two query heads a block) and a small one for the exactness of the lane padding with G = 1
    probe_run< 96, 2>({"D96, 8/2 heads, NORM",               96,  8,  2, 4352, 4, 1000, 0}, reps, nsm);
    probe_run< 96, 1>({"D96, 4/4 heads, G = 1",              96,  4,  4, 4096, 1, 1024, 1}, reps, nsm);
    return 0;
}
