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
// --mask: pass a mask row (all zeros, as se-backend-check's one-query cases) as the op does

#include "fattn-se.cu"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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
static void probe_reference(const probe_case & c, const float * q, const half * K, const half * V, const int pq,
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
            kj[i] = __half2float(K[((size_t) hk*c.n_kv + j)*D + i]);
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
            out[i] += p*__half2float(V[((size_t) hk*c.n_kv + j)*D + i]);
        }
    }
    for (int i = 0; i < D; ++i) {
        out[i] /= den;
    }
}

template <int D, int NCOLS>
static void probe_run(const probe_case & c, const int reps, const int nsm) {
    const auto kernel = flash_attn_ext_se_vec<D, NCOLS, GGML_TYPE_F16, GGML_TYPE_F16>;
    constexpr int NT = FATTN_SE_NWARPS*WARP_SIZE;
    constexpr int NG = FATTN_SE_NWARPS*(WARP_SIZE/fattn_se_vec_lk(D));
    const int gqa = c.n_head/c.n_head_kv;

    // inputs: Q [D, 1, n_head] f32, K/V [D, n_kv, n_head_kv] f16, positions 0 .. n_kv - 1, the query at n_kv
    // uniform in [-2, 2) from a 64-bit LCG (a billion values: a normal distribution would take tens of seconds)
    uint64_t st = 1234;
    auto rnd = [&st]() {
        st = st*6364136223846793005ull + 1442695040888963407ull;
        return (float) (st >> 40)*(4.0f/16777216.0f) - 2.0f;
    };
    std::vector<float> q((size_t) D*c.n_head);
    std::vector<half>  k((size_t) D*c.n_kv*c.n_head_kv), v(k.size());
    for (auto & x : q) { x = rnd(); }
    for (auto & x : k) { x = __float2half(rnd()); }
    for (auto & x : v) { x = __float2half(rnd()); }
    std::vector<int> pk(c.n_kv);
    for (int j = 0; j < c.n_kv; ++j) {
        pk[j] = j;
    }
    const int pq = c.n_kv;

    float * dq; half * dk; half * dv; int * dpq; int * dpk; float * dout; float * dparts; float2 * dmeta; unsigned * dsink;
    PROBE_CHECK(cudaMalloc(&dq, q.size()*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dk, k.size()*sizeof(half)));
    PROBE_CHECK(cudaMalloc(&dv, v.size()*sizeof(half)));
    PROBE_CHECK(cudaMalloc(&dpq, sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dpk, pk.size()*sizeof(int)));
    PROBE_CHECK(cudaMalloc(&dout, (size_t) D*c.n_head*sizeof(float)));
    PROBE_CHECK(cudaMalloc(&dsink, sizeof(unsigned)));
    half * dmask = nullptr; // a mask row of zeros: every key visible, the reference unchanged
    if (g_mask) {
        PROBE_CHECK(cudaMalloc(&dmask, (size_t) c.n_kv*sizeof(half)));
        PROBE_CHECK(cudaMemset(dmask, 0, (size_t) c.n_kv*sizeof(half)));
    }
    PROBE_CHECK(cudaMemcpy(dq, q.data(), q.size()*sizeof(float), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dk, k.data(), k.size()*sizeof(half), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dv, v.data(), v.size()*sizeof(half), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpq, &pq, sizeof(int), cudaMemcpyHostToDevice));
    PROBE_CHECK(cudaMemcpy(dpk, pk.data(), pk.size()*sizeof(int), cudaMemcpyHostToDevice));

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
    double max_abs = 0.0, num = 0.0, den = 0.0;
    std::vector<double> ref(D);
    for (int h : {0, 1, c.n_head - 1}) {
        probe_reference(c, q.data(), k.data(), v.data(), pq, pk.data(), h, scale, p.theta_scale, ref.data());
        for (int i = 0; i < D; ++i) {
            const double e = out[(size_t) h*D + i] - ref[i];
            max_abs = std::max(max_abs, std::fabs(e));
            num += e*e;
            den += ref[i]*ref[i];
        }
    }

    // timing: the kernel (+ combine), then a plain read of the same K and V bytes
    cudaEvent_t e0, e1;
    PROBE_CHECK(cudaEventCreate(&e0));
    PROBE_CHECK(cudaEventCreate(&e1));
    auto time_us = [&](auto && f) {
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
        return 1000.0*ms/reps;
    };
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
           c.G, c.W, nsplit, max_abs, std::sqrt(num/den), t_se, kv_bytes/t_se/1e3, t_read, kv_bytes/t_read/1e3);
    printf("{\"probe\": \"se_vec\", \"shape\": \"%s\", \"D\": %d, \"n_head\": %d, \"n_head_kv\": %d, \"n_kv\": %d, "
           "\"G\": %d, \"W\": %d, \"neox\": %d, \"nsplit\": %d, \"occupancy\": %d, \"max_abs\": %.4e, \"rel_l2\": %.4e, "
           "\"se_vec_us\": %.2f, \"read_us\": %.2f, \"kv_bytes\": %zu, \"c8_us_diff\": [%.2f, %.1e], "
           "\"splits_us_diff\": {%s}, \"mask\": %d}\n", c.name, D, c.n_head, c.n_head_kv, c.n_kv, c.G, c.W, c.neox, nsplit,
           occupancy, max_abs, std::sqrt(num/den), t_se, t_read, kv_bytes, t_c8, d_c8, alt.c_str(), (int) g_mask);

    cudaFree(dq); cudaFree(dk); cudaFree(dv); cudaFree(dpq); cudaFree(dpk); cudaFree(dout); cudaFree(dparts);
    cudaFree(dmeta); cudaFree(dsink); cudaFree(dmask);
    cudaEventDestroy(e0); cudaEventDestroy(e1);
}

int main(int argc, char ** argv) {
    int reps = 20;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--splits") && i + 1 < argc) {
            for (char * t = strtok(argv[++i], ","); t; t = strtok(nullptr, ",")) {
                g_splits.push_back(atoi(t));
            }
        } else if (!strcmp(argv[i], "--mask")) {
            g_mask = true;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--splits N,N,...] [--mask]\n", argv[0]);
            return 1;
        }
    }
    cudaDeviceProp prop;
    PROBE_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("GPU: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    printf("%-34s %6s %7s %10s %6s %8s %8s %9s %7s %9s %7s\n", "shape", "kv", "heads", "G/W", "splits", "max_abs",
           "rel_l2", "se_us", "GB/s", "read_us", "GB/s");
    for (int kv : {4096, 16384, 32768, 65536}) {
        // Phi-3-mini heads (head size 96, MHA, NEOX), then Llama-2-7B heads (head size 128, MHA): the
        // same kernel where llama.cpp's vector kernel with Self-Extend runs by default (0.97 - 1.01x of stock)
        probe_run< 96, 1>({"phi-3-mini (D96, 32/32, NEOX)", 96, 32, 32, kv, 8, 1024, 1}, reps, prop.multiProcessorCount);
        probe_run<128, 1>({"llama2-7b (D128, 32/32)",       128, 32, 32, kv, 8, 1024, 0}, reps, prop.multiProcessorCount);
    }
    // a GQA case at 96 (two query heads a block) and a small one for the exactness of the lane padding with G = 1
    probe_run< 96, 2>({"D96, 8/2 heads, NORM",               96,  8,  2, 4352, 4, 1000, 0}, reps, prop.multiProcessorCount);
    probe_run< 96, 1>({"D96, 4/4 heads, G = 1",              96,  4,  4, 4096, 1, 1024, 1}, reps, prop.multiProcessorCount);
    return 0;
}
