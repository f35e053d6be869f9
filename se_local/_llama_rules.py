"""Architectures whose llama.cpp graph builders assert on head sizes (generated; do not edit).

Regenerate for another llama.cpp with ``python tests/llama_rules.py PATH/TO/llama.cpp``.
"""

SAME_KV_HEAD = frozenset({
    "afmoe", "apertus", "arcee", "arctic", "baichuan", "bailingmoe2", "bert", "bitnet", "bloom",
    "chameleon", "chatglm", "codeshell", "cogvlm", "cohere2", "cohere2moe", "command-r", "dbrx",
    "deci", "deepseek", "deepseek4", "dflash", "dots1", "dream", "eagle3", "ernie4_5",
    "ernie4_5-moe", "eurobert", "exaone", "falcon", "glm4", "glm4moe", "gpt2", "gptneox", "granite",
    "granite_swa", "granitehybrid", "granitemoe", "graniteswitch", "grok", "grovemoe",
    "hunyuan-dense", "hunyuan-moe", "hunyuan_vl", "hy_v3", "internlm2", "jais", "jais2",
    "jina-bert-v2", "jina-bert-v3", "laguna", "llada", "llada-moe", "llama", "llama-embed",
    "llama4", "maincoder", "mellum", "minicpm", "minimax-01", "minimax-m2", "minimax-m3",
    "mistral3", "modern-bert", "mpt", "muse-glimmer", "nanbeige", "nemotron", "nemotron_h",
    "nemotron_h_moe", "neo-bert", "nomic-bert", "nomic-bert-moe", "olmo", "olmo2", "olmoe",
    "openelm", "orion", "paddleocr", "pangu-embedded", "phi2", "phi3", "phimoe", "plamo",
    "pockettts", "qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen35", "qwen35moe", "qwen3moe",
    "qwen3next", "qwen3vl", "qwen3vlmoe", "qwen4exp", "refact", "rnd1", "seed_oss", "smallthinker",
    "smollm3", "spark2_5", "stablelm", "starcoder", "starcoder2", "t5", "t5encoder", "xverse",
})
"""``GGML_ASSERT(n_embd_head == hparams.n_embd_head_k())``: value and key heads of one size."""

SAME_ROT_HEAD = frozenset({
    "apertus", "arcee", "arctic", "baichuan", "chameleon", "codeshell", "cogvlm", "cohere2moe",
    "dbrx", "deci", "deepseek", "dots1", "dream", "ernie4_5", "ernie4_5-moe", "exaone",
    "exaone-moe", "exaone4", "falcon", "granite", "granite_swa", "granitemoe", "graniteswitch",
    "grok", "grovemoe", "hunyuan-dense", "hunyuan-moe", "hunyuan_vl", "hy_v3", "internlm2", "jais2",
    "llada", "llada-moe", "llama", "llama-embed", "llama4", "maincoder", "mellum", "minicpm",
    "mistral3", "olmo", "olmo2", "olmoe", "orion", "paddleocr", "pangu-embedded", "plamo",
    "pockettts", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "qwen3vl", "qwen3vlmoe",
    "rnd1", "seed_oss", "smallthinker", "smollm3", "starcoder2", "talkie", "xverse",
})
"""``GGML_ASSERT(n_embd_head == n_rot)``: RoPE over the whole head (rope.dimension_count = head size)."""
