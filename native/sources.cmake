# se-local's own native sources (included by the top-level CMakeLists.txt)

# test support: one attention layer through ggml's CPU paths (tests/test_op.py)
add_library(se_local_ops SHARED "${CMAKE_CURRENT_LIST_DIR}/se-op-eval.c")
target_link_libraries(se_local_ops PRIVATE ggml ggml-base ggml-cpu)
list(APPEND SE_TARGETS se_local_ops)

# GPU check and benchmark of the Self-Extend flash-attention op (built only with a CUDA backend;
# run on a GPU machine: `se-backend-check check` and `se-backend-check perf`)
if(TARGET ggml-cuda)
    add_executable(se-backend-check "${CMAKE_CURRENT_LIST_DIR}/se-backend-check.cpp")
    target_link_libraries(se-backend-check PRIVATE ggml ggml-base ggml-cpu)
endif()
