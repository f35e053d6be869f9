// Issue 6, the per-token cost outside the kernels: what one graph input of N bytes costs a decode step when ggml's
// scheduler copies it (ggml_backend_tensor_copy -> the CUDA buffer's set_tensor: cudaMemcpyAsync from pageable host
// memory on cudaStreamPerThread, then cudaStreamSynchronize). Self-Extend's key positions are n_kv int32 a step (256
// KiB at 64k keys), the KQ mask stock and Self-Extend both copy n_kv f16 (128 KiB at 64k).
//     nvcc -O2 -o h2d bench/cuda_h2d_probe.cu && ./h2d      (median of 200 copies per size, after 20 untimed)
#include <cuda_runtime.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main() {
    const size_t sizes[] = {4 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10};
    const size_t max_size = 512 << 10;
    std::vector<char> host(max_size, 1); // pageable, as a ggml CPU buffer
    void * dev = nullptr;
    if (cudaMalloc(&dev, max_size) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        return 1;
    }
    printf("{\"probe\": \"h2d_pageable_set_tensor\", \"rows\": [\n");
    for (size_t i = 0; i < sizeof(sizes)/sizeof(sizes[0]); ++i) {
        const size_t n = sizes[i];
        std::vector<double> us;
        for (int rep = 0; rep < 220; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            cudaMemcpyAsync(dev, host.data(), n, cudaMemcpyHostToDevice, cudaStreamPerThread);
            cudaStreamSynchronize(cudaStreamPerThread);
            const auto t1 = std::chrono::steady_clock::now();
            if (rep >= 20) {
                us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            }
        }
        std::sort(us.begin(), us.end());
        printf("  {\"bytes\": %zu, \"median_us\": %.2f, \"p10_us\": %.2f, \"p90_us\": %.2f}%s\n", n, us[us.size()/2],
               us[us.size()/10], us[us.size()*9/10], i + 1 < sizeof(sizes)/sizeof(sizes[0]) ? "," : "");
    }
    printf("]}\n");
    const cudaError_t err = cudaGetLastError();
    cudaFree(dev);
    return err == cudaSuccess ? 0 : 1;
}
