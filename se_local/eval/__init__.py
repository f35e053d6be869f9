"""Evaluation and benchmarks: ``se-local eval passkey|ppl`` and ``se-local bench``.

* :mod:`.methods` — the five long-context methods compared on the same library build
  (``se``, ``vanilla``, ``grp-attn``, ``yarn``, ``linear``) and the native runner they
  share (one model load, one llama.cpp context per method and length).
* :mod:`.passkey` — the paper's passkey retrieval task, resumable JSON results.
* :mod:`.ppl` — perplexity with llama.cpp's ``llama-perplexity`` protocol.
* :mod:`.bench` — prefill/decode speed at depth: Self-Extend vs stock attention.
* :mod:`.plot` — the PNG figures (matplotlib, Agg backend).

Nothing here is imported by ``se_local`` itself; the command line imports it on use.
"""
