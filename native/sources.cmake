# se-local's own native sources (included by the top-level CMakeLists.txt)

# test support: one attention layer through ggml's CPU paths (tests/test_op.py)
add_library(se_local_ops SHARED "${CMAKE_CURRENT_LIST_DIR}/se-op-eval.c")
target_link_libraries(se_local_ops PRIVATE ggml ggml-base ggml-cpu)
list(APPEND SE_TARGETS se_local_ops)
