// se-backend-check: the Self-Extend flash-attention op (ggml_flash_attn_ext_set_self_extend) on a GPU backend,
// checked against the CPU backend and timed against the stock op. Built only where ggml has a GPU backend.
//
//   se-backend-check check [--threads N] [--max-seconds S] [--json FILE] [--quick]
//       random Q/K/V/positions over a grid (head sizes, GQA, K/V types, G/W, lengths up to 64k, one query and
//       512 queries); for each case the GPU and CPU results of the SE op and, as a yardstick, of the stock op
//   se-backend-check perf [--json FILE] [--quick]
//       GPU time of the SE op vs the stock op (same shapes, SE off) at kv 4k/16k/32k/64k, decode and prefill
//   --only decode|batch: only the cases with one query (decode) or with several (check and perf)
//   --kv N, --rep R (perf): only KV length N; R copies of the op per graph and one timed compute (for a profiler)
//   --shape S (perf): only the shapes whose name contains S (e.g. NEOX)
//   --cold (perf): the copies of the op in a graph read K and V from copies of their own, as many as make 256 MiB
//       (at least 2, at most one per op), so that each op finds them out of the GPU's L2 cache as each layer of a
//       model does; without it every op rereads the same K and V, which at short lengths stay in L2 (test-backend-ops'
//       way)
//   --no-bounds: leave out the promise of the grouped and the neighbor keys (ggml_flash_attn_ext_set_self_extend_bounds)
//       that llama.cpp gives with each batch and that the CUDA prefill uses to compute them with stock attention
//
// Exit code: 0 when every check case that the GPU supports is within tolerance, 1 otherwise.

#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

struct fa_case {
    int       D;
    int       n_head_kv;
    int       gqa;
    int       n_q;
    int       n_kv;
    int       ne3;         // streams
    ggml_type type;        // K and V
    int       G;
    int       W;
    int       pos_min;
    int       mode;        // GGML_ROPE_TYPE_NORMAL or GGML_ROPE_TYPE_NEOX
    int       pos_pattern; // 0: positions 0..n_kv-1, 1: gaps and masked cells
    float     softcap;
};

static int g_only = 0; // 0: all cases, 1: one query only, 2: several queries only

static bool g_bounds = true; // promise the grouped and the neighbor keys (ggml_flash_attn_ext_set_self_extend_bounds), as llama.cpp does

static int g_kv  = 0; // perf: only this KV length (0: all)
static int g_rep = 0; // perf: copies of the op per graph, one timed compute (0: the defaults, best of 5)
static const char * g_shape = nullptr; // perf: only the shapes whose name contains this
static bool g_cold = false; // perf: K/V copies per graph so that the ops read them from memory, not L2 (--cold)
static constexpr size_t COLD_BYTES = 256u << 20; // bytes of K and V copies with --cold (H100: 50 MB of L2)

// copies of K and V in a graph of n_rep ops: 1, or with --cold as many as make COLD_BYTES and at least 2 (so that
// an op never follows one that read the same copy), at most n_rep
static int kv_copies(const fa_case & c, int n_rep) {
    if (!g_cold) {
        return 1;
    }
    const size_t kv = 2*ggml_row_size(c.type, c.D)*c.n_kv*c.n_head_kv*c.ne3;
    return (int) std::min<size_t>(n_rep, std::max<size_t>(2, (COLD_BYTES + kv - 1)/kv));
}

static bool case_selected(const fa_case & c) {
    return (g_only == 0 || (g_only == 1) == (c.n_q == 1)) && (g_kv == 0 || c.n_kv == g_kv);
}

static std::string case_name(const fa_case & c) {
    char buf[256];
    snprintf(buf, sizeof(buf), "D=%d hkv=%d gqa=%d nq=%d kv=%d ns=%d %s G=%d W=%d pmin=%d %s pos=%d cap=%g",
        c.D, c.n_head_kv, c.gqa, c.n_q, c.n_kv, c.ne3, ggml_type_name(c.type), c.G, c.W, c.pos_min,
        c.mode == GGML_ROPE_TYPE_NEOX ? "neox" : "norm", c.pos_pattern, c.softcap);
    return buf;
}

static std::string case_json(const fa_case & c) {
    char buf[512];
    snprintf(buf, sizeof(buf),
        "\"D\": %d, \"n_head_kv\": %d, \"gqa\": %d, \"n_q\": %d, \"n_kv\": %d, \"n_seq\": %d, \"type_kv\": \"%s\", "
        "\"G\": %d, \"W\": %d, \"pos_min\": %d, \"rope\": \"%s\", \"pos_pattern\": %d, \"softcap\": %g, "
        "\"bounds_promise\": %s",
        c.D, c.n_head_kv, c.gqa, c.n_q, c.n_kv, c.ne3, ggml_type_name(c.type), c.G, c.W, c.pos_min,
        c.mode == GGML_ROPE_TYPE_NEOX ? "neox" : "norm", c.pos_pattern, c.softcap, g_bounds ? "true" : "false");
    return buf;
}

// host data of one case
struct fa_data {
    std::vector<float>       q;
    std::vector<uint8_t>     k;
    std::vector<uint8_t>     v;
    std::vector<ggml_fp16_t> mask;
    std::vector<int32_t>     pos_q;
    std::vector<int32_t>     pos_k;
};

static fa_data make_data(const fa_case & c, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    fa_data d;
    const int64_t n_head = (int64_t) c.n_head_kv*c.gqa;

    // scores q.k*scale with a std of ~3: far from a uniform average, sensitive to the scores
    d.q.resize((size_t) c.D*c.n_q*n_head*c.ne3);
    for (float & x : d.q) {
        x = 3.0f*nd(rng);
    }
    const int64_t nrows = (int64_t) c.n_kv*c.n_head_kv*c.ne3;
    std::vector<float> tmp((size_t) nrows*c.D);
    for (std::vector<uint8_t> * dst : {&d.k, &d.v}) {
        for (float & x : tmp) {
            x = nd(rng);
        }
        dst->resize(ggml_row_size(c.type, c.D)*nrows);
        ggml_quantize_chunk(c.type, tmp.data(), dst->data(), 0, nrows, c.D, nullptr);
    }

    d.pos_k.resize((size_t) c.n_kv*c.ne3);
    d.pos_q.resize((size_t) c.n_q*c.ne3);
    d.mask.resize((size_t) c.n_kv*c.n_q*c.ne3);
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t ninf = ggml_fp32_to_fp16(-INFINITY);
    for (int s = 0; s < c.ne3; ++s) {
        int32_t * pk = d.pos_k.data() + (size_t) s*c.n_kv;
        int32_t * pq = d.pos_q.data() + (size_t) s*c.n_q;
        const int off = 777*s;
        for (int j = 0; j < c.n_kv; ++j) {
            pk[j] = off + (c.pos_pattern == 1 ? j + j/7 : j);
        }
        for (int i = 0; i < c.n_q; ++i) {
            pq[i] = pk[c.n_kv - c.n_q + i];
        }
        for (int i = 0; i < c.n_q; ++i) {
            ggml_fp16_t * m = d.mask.data() + ((size_t) s*c.n_q + i)*c.n_kv;
            for (int j = 0; j < c.n_kv; ++j) {
                bool visible = pk[j] <= pq[i];
                if (c.pos_pattern == 1 && j % 13 == 5 && j < c.n_kv - c.n_q) {
                    visible = false; // an empty cell
                }
                m[j] = visible ? zero : ninf;
            }
        }
    }
    return d;
}

// the promise that llama.cpp gives with each batch (ggml_flash_attn_ext_set_self_extend_bounds): the first keys are
// grouped for every query, the last ones neighbors or masked for every query, in every stream
static std::pair<int, int> se_bounds(const fa_case & c, const fa_data & d) {
    int n_g = c.n_kv;
    int n_n = c.n_kv;
    for (int s = 0; s < c.ne3; ++s) {
        const int32_t * pk = d.pos_k.data() + (size_t) s*c.n_kv;
        const int32_t * pq = d.pos_q.data() + (size_t) s*c.n_q;
        int32_t pq_min = INT32_MAX;
        int32_t pq_max = INT32_MIN;
        for (int i = 0; i < c.n_q; ++i) {
            pq_min = std::min(pq_min, pq[i]);
            pq_max = std::max(pq_max, pq[i]);
        }
        int g = 0;
        while (pq_min >= c.pos_min && g < c.n_kv && (int64_t) pk[g] <= (int64_t) pq_min - c.W) {
            ++g;
        }
        auto masked_for_all = [&](int j) {
            for (int i = 0; i < c.n_q; ++i) {
                if (d.mask[((size_t) s*c.n_q + i)*c.n_kv + j] != ggml_fp32_to_fp16(-INFINITY)) {
                    return false;
                }
            }
            return true;
        };
        int n = 0;
        while (g + n < c.n_kv && (pq_max < c.pos_min || (int64_t) pk[c.n_kv - 1 - n] > (int64_t) pq_max - c.W ||
                                  masked_for_all(c.n_kv - 1 - n))) {
            ++n;
        }
        n_g = std::min(n_g, g);
        n_n = std::min(n_n, n);
    }
    return {n_g, std::min(n_n, c.n_kv - n_g)};
}

struct fa_graph {
    ggml_context *          ctx = nullptr;
    ggml_cgraph *           gf  = nullptr;
    ggml_backend_buffer_t   buf = nullptr;
    std::vector<ggml_tensor *> outs;

    ~fa_graph() {
        if (buf) {
            ggml_backend_buffer_free(buf);
        }
        if (ctx) {
            ggml_free(ctx);
        }
    }
};

// n_rep copies of the op on the same inputs (timing; op r reads K/V copy r % kv_copies, all with the same values);
// returns false if the backend cannot run the op
static bool build_graph(fa_graph & g, const fa_case & c, const fa_data & d, bool se, int n_rep, ggml_backend_t backend) {
    const int n_kv_copies = kv_copies(c, n_rep);
    const size_t mem = ggml_tensor_overhead()*(16 + n_rep + 2*n_kv_copies) + ggml_graph_overhead_custom(GGML_DEFAULT_GRAPH_SIZE, false);
    ggml_init_params ip = { mem, nullptr, true };
    g.ctx = ggml_init(ip);
    const int64_t n_head = (int64_t) c.n_head_kv*c.gqa;

    ggml_tensor * q  = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, c.D, c.n_q,  n_head,      c.ne3);
    std::vector<ggml_tensor *> ks, vs;
    for (int i = 0; i < n_kv_copies; ++i) {
        ks.push_back(ggml_new_tensor_4d(g.ctx, c.type, c.D, c.n_kv, c.n_head_kv, c.ne3));
        vs.push_back(ggml_new_tensor_4d(g.ctx, c.type, c.D, c.n_kv, c.n_head_kv, c.ne3));
    }
    ggml_tensor * m  = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F16, c.n_kv, c.n_q, 1, c.ne3);
    ggml_tensor * pq = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, c.n_q,  c.ne3);
    ggml_tensor * pk = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, c.n_kv, c.ne3);

    g.gf = ggml_new_graph(g.ctx);
    for (int r = 0; r < n_rep; ++r) {
        ggml_tensor * out = ggml_flash_attn_ext(g.ctx, q, ks[r % n_kv_copies], vs[r % n_kv_copies], m,
                                                1.0f/sqrtf((float) c.D), 0.0f, c.softcap);
        ggml_prec_set_acc(out, GGML_PREC_F32);
        if (se) {
            ggml_flash_attn_ext_set_self_extend(out, pq, pk, nullptr, c.G, c.W, c.pos_min, c.D, c.mode, 10000.0f, 1.0f);
            if (g_bounds) {
                const std::pair<int, int> b = se_bounds(c, d);
                ggml_flash_attn_ext_set_self_extend_bounds(out, b.first, b.second);
            }
        }
        if (!ggml_backend_supports_op(backend, out)) {
            return false;
        }
        ggml_build_forward_expand(g.gf, out);
        g.outs.push_back(out);
    }

    g.buf = ggml_backend_alloc_ctx_tensors(g.ctx, backend);
    if (!g.buf) {
        fprintf(stderr, "allocation failed: %s\n", case_name(c).c_str());
        return false;
    }
    ggml_backend_tensor_set(q,  d.q.data(),     0, ggml_nbytes(q));
    for (int i = 0; i < n_kv_copies; ++i) {
        ggml_backend_tensor_set(ks[i], d.k.data(), 0, ggml_nbytes(ks[i]));
        ggml_backend_tensor_set(vs[i], d.v.data(), 0, ggml_nbytes(vs[i]));
    }
    ggml_backend_tensor_set(m,  d.mask.data(),  0, ggml_nbytes(m));
    ggml_backend_tensor_set(pq, d.pos_q.data(), 0, ggml_nbytes(pq));
    ggml_backend_tensor_set(pk, d.pos_k.data(), 0, ggml_nbytes(pk));
    return true;
}

static std::vector<float> run_once(const fa_case & c, const fa_data & d, bool se, ggml_backend_t backend, bool * ok) {
    fa_graph g;
    *ok = build_graph(g, c, d, se, 1, backend);
    if (!*ok) {
        return {};
    }
    // poison the output
    std::vector<float> out(ggml_nelements(g.outs[0]), NAN);
    ggml_backend_tensor_set(g.outs[0], out.data(), 0, ggml_nbytes(g.outs[0]));
    if (ggml_backend_graph_compute(backend, g.gf) != GGML_STATUS_SUCCESS) {
        *ok = false;
        return {};
    }
    ggml_backend_tensor_get(g.outs[0], out.data(), 0, ggml_nbytes(g.outs[0]));
    return out;
}

struct cmp_result {
    double max_abs = 0.0;
    double rel_l2  = 0.0;
    int64_t n_bad  = 0; // NaN/inf in the tested output
};

static cmp_result compare(const std::vector<float> & a, const std::vector<float> & ref) {
    cmp_result r;
    double num = 0.0;
    double den = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(a[i])) {
            r.n_bad++;
            continue;
        }
        const double e = (double) a[i] - ref[i];
        r.max_abs = std::max(r.max_abs, std::fabs(e));
        num += e*e;
        den += (double) ref[i]*ref[i];
    }
    r.rel_l2 = den > 0 ? sqrt(num/den) : sqrt(num);
    return r;
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static std::vector<fa_case> check_cases(bool quick) {
    std::vector<fa_case> cs;
    const ggml_type F16 = GGML_TYPE_F16;
    const ggml_type Q8  = GGML_TYPE_Q8_0;
    const int NORM = GGML_ROPE_TYPE_NORMAL;
    const int NEOX = GGML_ROPE_TYPE_NEOX;
    //                 D  hkv gqa  nq    kv  ns type  G     W  pmin  mode pat cap
    // decode (one query): the vec kernel
    for (int kv : {1000, 4096, 16384, 65536}) {
        cs.push_back({128, 2, 4,   1,   kv, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
        cs.push_back({ 64, 3, 3,   1,   kv, 1, F16,  6, 1024,    0, NORM, 0, 0.0f});
        cs.push_back({128, 2, 4,   1,   kv, 1, Q8,  12, 1024,    0, NORM, 0, 0.0f});
    }
    cs.push_back({128, 2, 1,   1, 16384, 1, F16,  4,   64,    0, NORM, 1, 0.0f});
    cs.push_back({ 64, 2, 4,   1, 16384, 1, F16,  8,  512,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 2, 4,   1, 16384, 1, F16,  8,  512,    0, NEOX, 1, 0.0f});
    cs.push_back({128, 2, 2,   1, 16384, 2, F16,  6, 1024,    0, NORM, 1, 0.0f});
    cs.push_back({ 64, 3, 3,   1, 16384, 1, Q8,   6, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({128, 2, 8,   1, 16384, 1, F16,  8, 1024, 8192, NORM, 0, 0.0f});
    cs.push_back({128, 2, 4,   1, 16384, 1, F16,  8, 1024, 20000, NORM, 0, 0.0f}); // pos_min above every query: plain
    cs.push_back({128, 2, 4,   1, 16384, 1, F16,  8, 1024,    0, NORM, 0, 30.0f});
    // one query through the mma kernel's 16-column instances: the window edge inside a K tile, gapped positions, GQA 8
    cs.push_back({128, 2, 4,   1, 16384, 1, F16,  8, 1000,    0, NORM, 1, 0.0f});
    cs.push_back({128, 2, 8,   1,  4352, 1, F16,  3, 1000,    0, NORM, 0, 0.0f});
    // ... with NEOX pairs (gathered into the rotated tile's order), q8_0
    cs.push_back({128, 2, 8,   1,  4352, 1, F16,  3, 1000,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 2, 4,   1, 16384, 1, Q8,   8, 1024,    0, NEOX, 1, 0.0f});
    // head sizes 80, 96, 112 (every case in the mma kernel; 96: 8 columns, 80 and 112: 16): MHA (Phi-3), GQA 2 and 8,
    // q8_0, gapped positions
    cs.push_back({ 96, 4, 1,   1, 16384, 1, F16,  8, 1024,    0, NEOX, 0, 0.0f});
    cs.push_back({ 80, 2, 2,   1,  4352, 1, F16,  5,  333,    0, NORM, 1, 0.0f});
    cs.push_back({112, 2, 8,   1,  5000, 1, F16,  6, 1000,    0, NEOX, 1, 0.0f}); // (q8_0 needs D % 32 == 0)
    // one query in 8 columns (K tiles of 128 keys, two U segments, the grouped keys rotated in place): the window edge
    // inside a tile (W not a multiple of 64), G not a power of 2, each GQA packing at 96, GQA 7 padded to 8 (Qwen),
    // gapped positions (the exact rotation), q8_0, a KV length that is not a multiple of 128, pos_min above the query
    cs.push_back({128, 2, 7,   1, 16384, 1, F16,  8, 1000,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 2, 4,   1,  8192, 1, F16,  3,  777,    0, NORM, 0, 0.0f});
    cs.push_back({128, 2, 8,   1,  8192, 1, F16,  5,  900,    0, NORM, 1, 0.0f});
    cs.push_back({128, 2, 4,   1, 16384, 1, Q8,   6, 1000,    0, NEOX, 0, 0.0f});
    cs.push_back({ 96, 4, 1,   1,  9000, 1, F16,  3,  700,    0, NORM, 1, 0.0f});
    cs.push_back({ 96, 2, 2,   1,  4352, 1, Q8,   5, 1000,    0, NEOX, 0, 0.0f});
    cs.push_back({ 96, 2, 4,   1,  4352, 1, F16,  7,  500,    0, NORM, 0, 0.0f});
    cs.push_back({ 96, 1, 8,   1,  4352, 1, F16,  4, 1000,    0, NEOX, 1, 0.0f});
    cs.push_back({ 96, 4, 1,   1,  4352, 1, F16,  4, 1000, 8000, NEOX, 0, 0.0f});
    // q8_0 K/V in llama.cpp's vector kernel (the bytes of K against the rotated query in float): MHA (Llama-2-7B) with
    // gapped positions, NEOX, logit softcap, pos_min inside the keys; GQA 4 below the mma route's 4096 keys
    cs.push_back({128, 4, 1,   1, 16384, 1, Q8,   8, 1000,    0, NORM, 1, 0.0f});
    cs.push_back({128, 4, 1,   1,  4096, 1, Q8,   5,  700,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 4, 1,   1,  4096, 1, Q8,   6, 1024,    0, NORM, 0, 30.0f});
    cs.push_back({128, 4, 1,   1, 65536, 1, Q8,  16, 2048, 9000, NORM, 0, 0.0f});
    cs.push_back({128, 2, 4,   1,  2048, 1, Q8,   3,  500,    0, NORM, 1, 0.0f});
    // batches of queries: the mma kernel
    for (int kv : {1000, 4096, 16384}) {
        cs.push_back({128, 2, 4, 512,   kv, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
        cs.push_back({ 64, 3, 3, 512,   kv, 1, F16,  6, 1024,    0, NORM, 0, 0.0f});
    }
    cs.push_back({128, 2, 1, 512, 16384, 1, F16,  4,   64,    0, NORM, 1, 0.0f});
    cs.push_back({ 64, 2, 4, 512, 16384, 1, F16, 12, 1024,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 2, 4, 512, 16384, 1, Q8,   8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({128, 2, 2, 512, 16384, 2, F16,  6, 1024,    0, NORM, 1, 0.0f});
    cs.push_back({128, 2, 4, 512, 16384, 1, F16,  8, 1024, 15900, NORM, 0, 0.0f}); // pos_min inside the batch
    cs.push_back({128, 2, 4,   7, 16384, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({ 64, 3, 3,  77,  5000, 1, F16,  6,  100,    0, NORM, 1, 0.0f});
    cs.push_back({128, 2, 4, 512, 16384, 1, F16,  8, 1024,    0, NORM, 0, 30.0f});
    cs.push_back({128, 2, 4, 512,  4096, 1, F16,  1, 1024,    0, NORM, 0, 0.0f}); // G = 1: grouped == neighbor
    cs.push_back({128, 2, 4, 512, 16384, 1, F16,  8, 1 << 20, 0, NORM, 0, 0.0f}); // W > kv: all neighbor
    // llama.cpp's mma kernel with Self-Extend: each GQA packing (ncols2 8/4/2/1), window edge and group boundaries
    // inside a K tile, query counts and KV lengths that are not multiples of the tiles, gapped positions
    cs.push_back({128, 2, 8, 512,  4096, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({ 64, 2, 8, 130,  4096, 1, F16,  5,  333,    0, NORM, 0, 0.0f});
    cs.push_back({ 64, 2, 2, 300,  4096, 1, F16,  5,  333,    0, NORM, 0, 0.0f});
    cs.push_back({128, 1, 4, 100,  4352, 1, F16,  3, 1000,    0, NORM, 1, 0.0f});
    cs.push_back({128, 2, 2, 200,  4352, 1, Q8,   7,  250, 1000, NORM, 1, 0.0f});
    cs.push_back({ 64, 3, 1,  90,  2000, 1, F16, 16,   40,    0, NORM, 0, 0.0f});
    cs.push_back({128, 2, 4,   1, 16384, 1, F16,  1, 1024,    0, NORM, 0, 0.0f}); // G = 1, one query
    // ... with NEOX pairs: each GQA packing, gapped positions, q8_0 with pos_min inside the batch, D=64
    cs.push_back({128, 2, 8, 130,  4096, 1, F16,  5,  333,    0, NEOX, 1, 0.0f});
    cs.push_back({128, 2, 2, 200,  4352, 1, Q8,   7,  250, 1000, NEOX, 1, 0.0f});
    cs.push_back({128, 1, 4, 100,  4352, 1, F16,  3, 1000,    0, NEOX, 1, 0.0f});
    cs.push_back({ 64, 3, 1,  90,  2000, 1, F16, 16,   40,    0, NEOX, 0, 0.0f});
    cs.push_back({ 64, 2, 8, 130,  4096, 1, F16,  5,  333,    0, NEOX, 0, 0.0f});
    // head sizes 80, 96, 112 (64 columns; the split route only at 96 with MHA): each GQA packing, NORM and NEOX, q8_0,
    // pos_min in the batch
    cs.push_back({ 96, 4, 1, 512, 16384, 1, F16,  8, 1024,    0, NEOX, 0, 0.0f});
    cs.push_back({ 96, 2, 4, 200,  4352, 1, Q8,   7,  250, 1000, NEOX, 1, 0.0f});
    cs.push_back({ 80, 2, 2, 130,  4096, 1, F16,  5,  333,    0, NORM, 1, 0.0f});
    cs.push_back({ 80, 3, 1,  90,  2000, 1, F16, 16,   40,    0, NEOX, 0, 0.0f});
    cs.push_back({112, 2, 8, 300,  4096, 1, F16,  6, 1000,    0, NEOX, 1, 0.0f});
    cs.push_back({112, 1, 4,  77,  5000, 1, F16,  3,  100,    0, NORM, 0, 0.0f});
    // the split route (grouped keys promised): two chunks of re-rotated keys and a ragged rest, two streams
    cs.push_back({128, 2, 4, 512, 20000, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({128, 2, 4, 512, 16384, 2, F16,  6, 1024,    0, NORM, 1, 0.0f});
    // ... with one block per output tile (the parts folded into dst by the kernel): Llama-3-8B heads, two chunks;
    // q8_0 (f16 copies); GQA 8 with gapped positions
    cs.push_back({128, 8, 4, 512, 20000, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({128, 8, 4, 512, 16384, 1, Q8,   8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({128, 4, 8, 1024, 16384, 1, F16, 8, 1024,    0, NORM, 1, 0.0f});
    // ... with NEOX pairs (the re-rotated keys and queries in the gathered order): two chunks, q8_0, GQA 7 (Qwen2.5-7B)
    cs.push_back({128, 8, 4, 512, 20000, 1, F16,  8, 1024,    0, NEOX, 0, 0.0f});
    cs.push_back({128, 4, 7, 512, 16384, 1, Q8,   8, 1024,    0, NEOX, 1, 0.0f});
    // ... MHA (one head per block, ncols2 1): Llama-2-7B heads, two chunks; a KV length that is not a multiple of 256
    // (the band through the Self-Extend kernel, 128 columns, its last tile bounds-checked); Phi-3-mini heads (D=96)
    // with q8_0 and gapped positions; D=96 with a query count that is not a multiple of the tile
    cs.push_back({128, 32, 1, 512, 16384, 1, F16, 8, 1024,    0, NORM, 1, 0.0f});
    cs.push_back({128, 4, 1, 512, 20000, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
    cs.push_back({ 96, 32, 1, 512, 16384, 1, Q8,  8, 1024,    0, NEOX, 1, 0.0f});
    cs.push_back({ 96, 4, 1, 300,  9000, 1, F16,  6, 1000,    0, NEOX, 0, 0.0f});
    if (!quick) {
        cs.push_back({128, 2, 4, 512, 65536, 1, F16,  8, 1024,    0, NORM, 0, 0.0f});
        cs.push_back({ 64, 3, 3, 512, 65536, 1, F16, 12, 1024,    0, NORM, 0, 0.0f});
        cs.push_back({128, 2, 4, 512, 65536, 1, Q8,  16, 1024,    0, NORM, 0, 0.0f});
    }
    return cs;
}

static int cmd_check(ggml_backend_t gpu, ggml_backend_t cpu, FILE * json, double max_seconds, bool quick) {
    const double t_start = now_s();
    int n_fail = 0;
    int n_pass = 0;
    int n_skip = 0;
    double worst_max_abs = 0.0;
    double worst_rel = 0.0;
    printf("%-100s %10s %10s %10s %10s %10s %6s\n", "case", "se_maxabs", "se_rel", "stk_maxabs", "stk_rel", "effect", "result");
    uint32_t seed = 1;
    for (const fa_case & c : check_cases(quick)) {
        if (!case_selected(c)) {
            continue;
        }
        if (now_s() - t_start > max_seconds) {
            printf("time budget of %.0f s used, stopping\n", max_seconds);
            break;
        }
        const double t0 = now_s();
        const fa_data d = make_data(c, seed++);
        bool ok_gpu = false;
        bool ok_cpu = false;
        const std::vector<float> se_gpu = run_once(c, d, true, gpu, &ok_gpu);
        if (!ok_gpu) {
            printf("%-100s %s\n", case_name(c).c_str(), "not supported on the GPU backend (falls back)");
            if (json) {
                fprintf(json, "{\"mode\": \"check\", %s, \"supported\": false}\n", case_json(c).c_str());
            }
            n_skip++;
            continue;
        }
        const std::vector<float> se_cpu = run_once(c, d, true, cpu, &ok_cpu);
        GGML_ASSERT(ok_cpu);
        bool ok_stk_gpu = false;
        bool ok_stk_cpu = false;
        const std::vector<float> st_gpu = run_once(c, d, false, gpu, &ok_stk_gpu);
        const std::vector<float> st_cpu = run_once(c, d, false, cpu, &ok_stk_cpu);

        const cmp_result r  = compare(se_gpu, se_cpu);
        cmp_result rs;
        if (ok_stk_gpu && ok_stk_cpu) {
            rs = compare(st_gpu, st_cpu);
        }
        const cmp_result eff = compare(st_cpu, se_cpu); // how much Self-Extend changes the result
        // tolerance: the order of the stock GPU kernel's own deviation from the CPU
        const bool pass = r.n_bad == 0 && r.rel_l2 < 1e-2 && r.max_abs < 5e-2;
        pass ? n_pass++ : n_fail++;
        worst_max_abs = std::max(worst_max_abs, r.max_abs);
        worst_rel     = std::max(worst_rel, r.rel_l2);
        printf("%-100s %10.2e %10.2e %10.2e %10.2e %10.2e %6s  (%.1f s)\n", case_name(c).c_str(), r.max_abs, r.rel_l2,
            rs.max_abs, rs.rel_l2, eff.rel_l2, pass ? "ok" : (r.n_bad ? "NAN" : "FAIL"), now_s() - t0);
        fflush(stdout);
        if (json) {
            fprintf(json, "{\"mode\": \"check\", %s, \"supported\": true, \"se_max_abs\": %.3e, \"se_rel_l2\": %.3e, "
                "\"se_nonfinite\": %" PRId64 ", \"stock_max_abs\": %.3e, \"stock_rel_l2\": %.3e, \"se_effect_rel_l2\": %.3e, \"pass\": %s}\n",
                case_json(c).c_str(), r.max_abs, r.rel_l2, r.n_bad, rs.max_abs, rs.rel_l2, eff.rel_l2, pass ? "true" : "false");
            fflush(json);
        }
    }
    printf("check: %d ok, %d failed, %d not supported (CPU fallback); worst max abs error %.3e, worst rel L2 %.3e\n",
        n_pass, n_fail, n_skip, worst_max_abs, worst_rel);
    if (json) {
        fprintf(json, "{\"mode\": \"check_summary\", \"ok\": %d, \"failed\": %d, \"unsupported\": %d, \"worst_max_abs\": %.3e, \"worst_rel_l2\": %.3e}\n",
            n_pass, n_fail, n_skip, worst_max_abs, worst_rel);
    }
    return n_fail == 0 ? 0 : 1;
}

// seconds per op: n_rep copies of the op in one graph, best of n_iter graph computes
static double time_op(const fa_case & c, const fa_data & d, bool se, ggml_backend_t backend, int n_rep, int n_iter) {
    fa_graph g;
    if (!build_graph(g, c, d, se, n_rep, backend)) {
        return -1.0;
    }
    if (ggml_backend_graph_compute(backend, g.gf) != GGML_STATUS_SUCCESS) { // warm-up
        return -1.0;
    }
    ggml_backend_synchronize(backend);
    double best = 1e30;
    for (int it = 0; it < n_iter; ++it) {
        const double t0 = now_s();
        ggml_backend_graph_compute(backend, g.gf);
        ggml_backend_synchronize(backend);
        best = std::min(best, now_s() - t0);
    }
    return best/n_rep;
}

static int cmd_perf(ggml_backend_t gpu, FILE * json, bool quick) {
    const char * dev = ggml_backend_dev_description(ggml_backend_get_device(gpu));
    if (g_cold) {
        printf("--cold: the ops of a graph read K/V from copies of their own, %d MiB of them (at least 2, at most one per op)\n",
            (int) (COLD_BYTES >> 20));
    }
    printf("%-34s %5s %6s %8s %-8s %11s %11s %7s %11s %7s\n", "shape", "n_q", "kv", "type", "G/W", "stock_us", "se_us",
        "ratio", "se_nbr_us", "ratio");
    struct shape { const char * name; int D, hkv, gqa, mode; };
    const shape shapes[] = {
        {"llama3-8b (D128, 32/8 heads)",        128, 8, 4, GGML_ROPE_TYPE_NORMAL},
        {"smollm2 (D64, 9/3 heads)",             64, 3, 3, GGML_ROPE_TYPE_NORMAL},
        {"qwen2.5-7b (D128, 28/4 heads, NEOX)", 128, 4, 7, GGML_ROPE_TYPE_NEOX},
        {"phi-3-mini (D96, 32/32 heads, NEOX)",  96, 32, 1, GGML_ROPE_TYPE_NEOX},
        {"llama2-7b (D128, 32/32 heads)",       128, 32, 1, GGML_ROPE_TYPE_NORMAL},
    };
    std::vector<int> kvs = {4096, 16384, 32768, 65536};
    if (quick) {
        kvs = {4096, 32768};
    }
    if (g_kv > 0) {
        kvs = {g_kv};
    }
    for (const shape & s : shapes) {
        if (g_shape && !strstr(s.name, g_shape)) {
            continue;
        }
        for (ggml_type type : {GGML_TYPE_F16, GGML_TYPE_Q8_0}) {
            if (type == GGML_TYPE_Q8_0 && s.D != 128) {
                continue;
            }
            for (int n_q : {1, 512, 4096}) {
                if (n_q == 4096 && (s.D != 128 || type != GGML_TYPE_F16)) {
                    continue;
                }
                for (int kv : kvs) {
                    if (n_q == 4096 && kv != 32768) {
                        continue;
                    }
                    fa_case c = {s.D, s.hkv, s.gqa, n_q, kv, 1, type, 8, 1024, 0, s.mode, 0, 0.0f};
                    if (!case_selected(c)) {
                        continue;
                    }
                    const fa_data d = make_data(c, 1234);
                    const int n_rep  = g_rep > 0 ? g_rep : n_q == 1 ? 50 : (n_q == 512 ? 8 : 2);
                    const int n_iter = g_rep > 0 ? 1 : 5;
                    const double t_stock = time_op(c, d, false, gpu, n_rep, n_iter);
                    const double t_se    = time_op(c, d, true,  gpu, n_rep, n_iter);
                    // SE kernel with every score a neighbor score (W > kv): its cost without the re-rotation
                    fa_case cn = c;
                    cn.W = kv + 1;
                    const double t_nbr = time_op(cn, d, true, gpu, n_rep, n_iter);
                    const double ratio     = t_se  > 0 ? t_stock/t_se  : 0.0;
                    const double ratio_nbr = t_nbr > 0 ? t_stock/t_nbr : 0.0;
                    printf("%-34s %5d %6d %8s %3d/%-4d %11.1f %11.1f %7.3f %11.1f %7.3f\n", s.name, n_q, kv, ggml_type_name(type),
                        c.G, c.W, t_stock*1e6, t_se*1e6, ratio, t_nbr*1e6, ratio_nbr);
                    fflush(stdout);
                    if (json) {
                        fprintf(json, "{\"mode\": \"perf\", \"device\": \"%s\", \"shape\": \"%s\", %s, \"stock_us\": %.2f, \"se_us\": %.2f, "
                            "\"se_vs_stock\": %.4f, \"se_all_neighbor_us\": %.2f, \"se_all_neighbor_vs_stock\": %.4f, \"n_rep\": %d, "
                            "\"cold\": %s, \"kv_copies\": %d}\n",
                            dev, s.name, case_json(c).c_str(), t_stock*1e6, t_se*1e6, ratio, t_nbr*1e6, ratio_nbr, n_rep,
                            g_cold ? "true" : "false", kv_copies(c, n_rep));
                        fflush(json);
                    }
                }
            }
        }
    }
    return 0;
}

int main(int argc, char ** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0); // each result line out at once: a step cut by its timeout keeps what it printed
    if (argc < 2 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "perf") != 0)) {
        fprintf(stderr, "usage: %s check|perf [--threads N] [--max-seconds S] [--json FILE] [--quick] [--only decode|batch] [--kv N] [--rep R] [--shape S] [--cold] [--no-bounds]\n", argv[0]);
        return 2;
    }
    int n_threads = 16;
    double max_seconds = 1e9;
    const char * json_path = nullptr;
    bool quick = false;
    for (int i = 2; i < argc; ++i) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) {
            max_seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json_path = argv[++i];
        } else if (!strcmp(argv[i], "--no-bounds")) {
            g_bounds = false;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc && (!strcmp(argv[i + 1], "decode") || !strcmp(argv[i + 1], "batch"))) {
            g_only = !strcmp(argv[++i], "decode") ? 1 : 2;
        } else if (!strcmp(argv[i], "--kv") && i + 1 < argc) {
            g_kv = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--rep") && i + 1 < argc) {
            g_rep = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            g_shape = argv[++i];
        } else if (!strcmp(argv[i], "--cold")) {
            g_cold = true;
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }

    ggml_backend_load_all();
    // SE_CHECK_CPU_AS_GPU=1: test the harness itself on a machine without a GPU (a second CPU backend)
    const char * cpu_as_gpu = getenv("SE_CHECK_CPU_AS_GPU");
    ggml_backend_t gpu = cpu_as_gpu && atoi(cpu_as_gpu) ? ggml_backend_cpu_init()
                                                         : ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU, nullptr);
    if (cpu_as_gpu && atoi(cpu_as_gpu)) {
        ggml_backend_cpu_set_n_threads(gpu, n_threads);
    }
    if (!gpu) {
        fprintf(stderr, "no GPU backend\n");
        return 2;
    }
    ggml_backend_t cpu = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(cpu, n_threads);
    printf("GPU backend: %s (%s)\n", ggml_backend_name(gpu), ggml_backend_dev_description(ggml_backend_get_device(gpu)));

    FILE * json = json_path ? fopen(json_path, "a") : nullptr;
    int rc = 0;
    if (!strcmp(argv[1], "check")) {
        rc = cmd_check(gpu, cpu, json, max_seconds, quick);
    } else {
        rc = cmd_perf(gpu, json, quick);
    }
    if (json) {
        fclose(json);
    }
    ggml_backend_free(cpu);
    ggml_backend_free(gpu);
    return rc;
}
