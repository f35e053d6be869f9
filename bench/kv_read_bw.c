// Read bandwidth of a KV-cache-shaped buffer, two ways: all heads of each cell in storage order
// (what a decode work item covering all heads reads) vs one head's slice of every cell, head by
// head (what an item per KV head reads: 128 of every 384 bytes for SmolLM2's 3 KV heads x 64 x f16).
//   cc -O2 -mavx512f -pthread bench/kv_read_bw.c -o /tmp/kv_read_bw && /tmp/kv_read_bw 2
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CELLS   (16384*30)  // SmolLM2: 30 layers at 16k depth
#define HEADS   3
#define ROW     128         // bytes of one head's key (64 x f16)

static char * buf;
static int    n_threads;
static int    per_head;
static volatile float sink;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec*1e-9;
}

static void * worker(void * arg) {
    const long t  = (long) arg;
    const long c0 = t*(CELLS/n_threads);
    const long c1 = c0 + CELLS/n_threads;
    __m512 acc = _mm512_setzero_ps();
    for (int h = 0; h < (per_head ? HEADS : 1); ++h) {
        for (long c = c0; c < c1; ++c) {
            const char * p = buf + c*HEADS*ROW + (per_head ? h*ROW : 0);
            for (int o = 0; o < (per_head ? ROW : HEADS*ROW); o += 64) {
                acc = _mm512_add_ps(acc, _mm512_loadu_ps((const float *) (p + o)));
            }
        }
    }
    sink = _mm512_reduce_add_ps(acc);
    return NULL;
}

int main(int argc, char ** argv) {
    n_threads = argc > 1 ? atoi(argv[1]) : 2;
    const size_t bytes = (size_t) CELLS*HEADS*ROW;
    buf = aligned_alloc(64, bytes);
    memset(buf, 1, bytes);
    pthread_t th[64];
    for (int round = 0; round < 4; ++round) {
        for (per_head = 0; per_head < 2; ++per_head) {
            const double t = now();
            for (long i = 0; i < n_threads; ++i) pthread_create(&th[i], NULL, worker, (void *) i);
            for (int i = 0; i < n_threads; ++i) pthread_join(th[i], NULL);
            const double dt = now() - t;
            printf("%-22s %6.1f ms  %5.1f GB/s\n", per_head ? "one head at a time" : "all heads, as stored",
                   dt*1e3, bytes/dt/1e9);
        }
    }
    return 0;
}
