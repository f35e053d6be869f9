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

// The promise of ggml_flash_attn_ext_set_self_extend_bounds for the following fused (path 1) calls (default 0, 0:
// none); the CPU op checks it and aborts the process when it does not hold.
SE_API void se_local_attn_set_bounds(int32_t n_kv_grouped, int32_t n_kv_neighbor);

// The K/V layout of the following flash-attention calls (paths 0 and 1): 0 (default) llama's cache, the rows of all
// heads of a key adjacent ([d, n_head_kv, n_kv] viewed as [d, n_kv, n_head_kv]); 1 head-major, each head's rows
// contiguous ([d, n_kv, n_head_kv]). The portable path (2) takes llama's layout only (returns 5 otherwise).
SE_API void se_local_attn_set_kv_layout(int32_t head_major);

// Benchmark support: compute the graph of each se_local_attn_eval call n_repeat times (default 1)
// and keep the fastest compute time, in microseconds (graph construction and input conversion
// excluded; -1 before the first call).
SE_API void    se_local_attn_set_repeat(int32_t n_repeat);
SE_API int64_t se_local_attn_best_us(void);
// The same for the process's CPU time (all threads): with n_threads = 1 it is the kernel's own
// time, robust to other load on a shared machine.
SE_API int64_t se_local_attn_best_cpu_us(void);

#ifdef __cplusplus
}
#endif
