// se-local: evaluate one attention layer through ggml on the CPU.
//
// Used by the exactness tests (tests/test_op.py) to compare ggml's Self-Extend paths with the
// NumPy reference of Algorithm 1: the fused flash-attention kernel, and the portable path built
// from existing ops (RoPE re-rotation, two score matrices, merge before the softmax), which is
// the same sequence of ops as llama's non-flash attention builder in patches/0002.

#include "se-op-eval.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int     se_repeat      = 1;
static int64_t se_best_us     = -1;
static int64_t se_best_cpu_us = -1;
static int32_t se_n_kv_grouped  = 0;
static int32_t se_n_kv_neighbor = 0;
static int     se_head_major    = 0;

void se_local_attn_set_bounds(int32_t n_kv_grouped, int32_t n_kv_neighbor) {
    se_n_kv_grouped  = n_kv_grouped;
    se_n_kv_neighbor = n_kv_neighbor;
}

void se_local_attn_set_kv_layout(int32_t head_major) {
    se_head_major = head_major != 0;
}

void se_local_attn_set_repeat(int32_t n_repeat) {
    se_repeat = n_repeat > 0 ? n_repeat : 1;
}

int64_t se_local_attn_best_us(void) {
    return se_best_us;
}

int64_t se_local_attn_best_cpu_us(void) {
    return se_best_cpu_us;
}

static int64_t se_floordiv(int64_t a, int64_t b) {
    return a >= 0 ? a/b : -((-a + b - 1)/b);
}

int se_local_attn_eval(
        const float   * q,       // [n_head   ][n_q ][d]
        const float   * k,       // [n_head_kv][n_kv][d]
        const float   * v,       // [n_head_kv][n_kv][d]
        const int32_t * pos_q,   // [n_q]
        const int32_t * pos_k,   // [n_kv]
        int32_t n_q, int32_t n_kv, int32_t n_head, int32_t n_head_kv, int32_t d,
        int32_t k_type, int32_t path,
        int32_t n_group, int32_t n_window, int32_t pos_min,
        int32_t n_dims, int32_t rope_mode, float freq_base,
        int32_t n_threads,
        float * out) {            // [n_head][n_q][d]
    if (n_q <= 0 || n_kv <= 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 || d <= 0 ||
        n_group < 1 || n_window < 1 || path < 0 || path > 2 || n_dims <= 0 || n_dims > d) {
        return 1;
    }
    if (k_type != GGML_TYPE_F32 && k_type != GGML_TYPE_F16 && k_type != GGML_TYPE_Q8_0) {
        return 2;
    }
    if (se_head_major && path == 2) {
        return 5;
    }

    const size_t mem = (size_t) 64*1024*1024 +
        sizeof(float)*((size_t) 8*n_head*n_q*d + (size_t) 8*n_head_kv*n_kv*d + (size_t) 8*n_head*n_q*n_kv);
    struct ggml_init_params ip = { mem, NULL, false };
    struct ggml_context * ctx = ggml_init(ip);
    if (!ctx) {
        return 3;
    }

    // llama's layouts: q [d, n_head, n_q], k/v cache [d, n_head_kv, n_kv] (head-major: [d, n_kv, n_head_kv])
    struct ggml_tensor * tq = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d, n_head, n_q);
    struct ggml_tensor * tk = se_head_major ? ggml_new_tensor_3d(ctx, (enum ggml_type) k_type, d, n_kv, n_head_kv)
                                            : ggml_new_tensor_3d(ctx, (enum ggml_type) k_type, d, n_head_kv, n_kv);
    struct ggml_tensor * tv = se_head_major ? ggml_new_tensor_3d(ctx, GGML_TYPE_F16, d, n_kv, n_head_kv)
                                            : ggml_new_tensor_3d(ctx, GGML_TYPE_F16, d, n_head_kv, n_kv);
    // byte offsets of head h's row j in tk/tv
    const size_t k_sh = se_head_major ? tk->nb[2] : tk->nb[1], k_sj = se_head_major ? tk->nb[1] : tk->nb[2];
    const size_t v_sh = se_head_major ? tv->nb[2] : tv->nb[1], v_sj = se_head_major ? tv->nb[1] : tv->nb[2];

    float * row = (float *) malloc(sizeof(float)*d);
    for (int64_t h = 0; h < n_head; ++h) {
        for (int64_t i = 0; i < n_q; ++i) {
            memcpy((char *) tq->data + i*tq->nb[2] + h*tq->nb[1], q + (h*n_q + i)*d, sizeof(float)*d);
        }
    }
    for (int64_t h = 0; h < n_head_kv; ++h) {
        for (int64_t j = 0; j < n_kv; ++j) {
            const float * kr = k + (h*n_kv + j)*d;
            char * kd = (char *) tk->data + j*k_sj + h*k_sh;
            if (k_type == GGML_TYPE_F32) {
                memcpy(kd, kr, sizeof(float)*d);
            } else {
                ggml_quantize_chunk((enum ggml_type) k_type, kr, kd, 0, 1, d, NULL);
            }
            memcpy(row, v + (h*n_kv + j)*d, sizeof(float)*d);
            ggml_fp32_to_fp16_row(row, (ggml_fp16_t *) ((char *) tv->data + j*v_sj + h*v_sh), d);
        }
    }
    free(row);

    const int is_flash = path != 2;
    struct ggml_tensor * mask = ggml_new_tensor_2d(ctx, is_flash ? GGML_TYPE_F16 : GGML_TYPE_F32, n_kv, n_q);
    for (int64_t i = 0; i < n_q; ++i) {
        for (int64_t j = 0; j < n_kv; ++j) {
            const float m = pos_k[j] <= pos_q[i] ? 0.0f : -INFINITY;
            if (is_flash) {
                ((ggml_fp16_t *) mask->data)[i*n_kv + j] = ggml_fp32_to_fp16(m);
            } else {
                ((float *) mask->data)[i*n_kv + j] = m;
            }
        }
    }

    const float scale = 1.0f/sqrtf((float) d);

    struct ggml_tensor * qp = ggml_permute(ctx, tq, 0, 2, 1, 3); // [d, n_q,  n_head]
    struct ggml_tensor * kp = se_head_major ? tk : ggml_permute(ctx, tk, 0, 2, 1, 3); // [d, n_kv, n_head_kv]
    struct ggml_tensor * vp = se_head_major ? tv : ggml_permute(ctx, tv, 0, 2, 1, 3); // [d, n_kv, n_head_kv]

    struct ggml_tensor * res;
    if (is_flash) {
        res = ggml_flash_attn_ext(ctx, qp, kp, vp, mask, scale, 0.0f, 0.0f);
        ggml_prec_set_acc(res, GGML_PREC_F32);
        if (path == 1) {
            struct ggml_tensor * tpq = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, n_q, 1);
            struct ggml_tensor * tpk = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, n_kv, 1);
            memcpy(tpq->data, pos_q, sizeof(int32_t)*n_q);
            memcpy(tpk->data, pos_k, sizeof(int32_t)*n_kv);
            ggml_flash_attn_ext_set_self_extend(res, tpq, tpk, NULL, n_group, n_window, pos_min,
                                                n_dims, rope_mode, freq_base, 1.0f);
            ggml_flash_attn_ext_set_self_extend_bounds(res, se_n_kv_grouped, se_n_kv_neighbor);
        }
        // res: [d, n_head, n_q]
    } else {
        // portable: the ops of llama's build_attn_mha (non-flash branch) with Self-Extend
        struct ggml_tensor * dq   = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_q);
        struct ggml_tensor * dk   = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_kv);
        struct ggml_tensor * sel  = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv, n_q);
        struct ggml_tensor * nsel = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv, n_q);
        for (int64_t i = 0; i < n_q; ++i) {
            const int64_t p = pos_q[i];
            ((int32_t *) dq->data)[i] = p >= pos_min ? (int32_t) (se_floordiv(p, n_group) + n_window - n_window/n_group - p) : 0;
            for (int64_t j = 0; j < n_kv; ++j) {
                const int ngb = p < pos_min || p - pos_k[j] < n_window;
                ((float *) sel->data)[i*n_kv + j]  = ngb ? 1.0f : 0.0f;
                ((float *) nsel->data)[i*n_kv + j] = ngb ? 0.0f : 1.0f;
            }
        }
        for (int64_t j = 0; j < n_kv; ++j) {
            ((int32_t *) dk->data)[j] = (int32_t) (se_floordiv(pos_k[j], n_group) - pos_k[j]);
        }

        struct ggml_tensor * q_se = ggml_rope_ext(ctx, tq, dq, NULL, n_dims, rope_mode, 0, freq_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
        struct ggml_tensor * k_se = ggml_rope_ext(ctx, ggml_cast(ctx, tk, GGML_TYPE_F32), dk, NULL, n_dims, rope_mode, 0, freq_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
        q_se = ggml_permute(ctx, q_se, 0, 2, 1, 3);
        k_se = ggml_permute(ctx, k_se, 0, 2, 1, 3);

        struct ggml_tensor * kq   = ggml_mul_mat(ctx, kp, qp);     // [n_kv, n_q, n_head]
        struct ggml_tensor * kq_g = ggml_mul_mat(ctx, k_se, q_se);
        ggml_prec_set_acc(kq,   GGML_PREC_F32);
        ggml_prec_set_acc(kq_g, GGML_PREC_F32);
        kq = ggml_add(ctx, ggml_mul(ctx, kq, sel), ggml_mul(ctx, kq_g, nsel));
        kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);

        struct ggml_tensor * vt  = ggml_cont(ctx, ggml_transpose(ctx, vp)); // [n_kv, d, n_head_kv]
        struct ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);              // [d, n_q, n_head]
        res = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));          // [d, n_head, n_q]
    }

    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, res);
    se_best_us     = -1;
    se_best_cpu_us = -1;
    for (int rep = 0; rep < se_repeat; ++rep) {
        const clock_t c0 = clock();
        const int64_t t0 = ggml_time_us();
        if (ggml_graph_compute_with_ctx(ctx, gf, n_threads > 0 ? n_threads : 1) != GGML_STATUS_SUCCESS) {
            ggml_free(ctx);
            return 4;
        }
        const int64_t dt = ggml_time_us() - t0;
        const int64_t dc = (int64_t) ((double) (clock() - c0)*1e6/CLOCKS_PER_SEC);
        se_best_us     = se_best_us     < 0 || dt < se_best_us     ? dt : se_best_us;
        se_best_cpu_us = se_best_cpu_us < 0 || dc < se_best_cpu_us ? dc : se_best_cpu_us;
    }

    for (int64_t h = 0; h < n_head; ++h) {
        for (int64_t i = 0; i < n_q; ++i) {
            memcpy(out + (h*n_q + i)*d, (const char *) res->data + i*res->nb[2] + h*res->nb[1], sizeof(float)*d);
        }
    }
    ggml_free(ctx);
    return 0;
}
