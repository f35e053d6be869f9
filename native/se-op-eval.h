#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#    define SE_API __declspec(dllexport)
#else
#    define SE_API __attribute__((visibility("default")))
#endif

// Evaluate one causal attention layer through ggml on the CPU (test support).
// q: [n_head][n_q][d], k, v: [n_head_kv][n_kv][d], float32, already rotated with RoPE at pos_q/pos_k.
// k is stored as k_type (GGML_TYPE_F32, F16 or Q8_0), v as F16, as in llama's KV cache.
// path: 0 = stock flash attention, 1 = fused Self-Extend flash attention,
//       2 = portable Self-Extend (rope re-rotation, two score matrices, merge, softmax).
// out: [n_head][n_q][d]. Returns 0 on success, > 0 on invalid arguments or failure.
SE_API int se_local_attn_eval(
        const float   * q,
        const float   * k,
        const float   * v,
        const int32_t * pos_q,
        const int32_t * pos_k,
        int32_t n_q, int32_t n_kv, int32_t n_head, int32_t n_head_kv, int32_t d,
        int32_t k_type, int32_t path,
        int32_t n_group, int32_t n_window, int32_t pos_min,
        int32_t n_dims, int32_t rope_mode, float freq_base,
        int32_t n_threads,
        float * out);

#ifdef __cplusplus
}
#endif
