"""The evaluation harness (se_local/eval) on the tiny random llama: prompt construction,
scoring, the JSON it writes, resuming, plots, every method, the bench's JSON, the CLI.

Real-model evaluations (SmolLM2) are scripts (bench/eval_smollm2_cpu.sh), not tests.
"""

import json
import math

import numpy as np
import pytest

from se_local.errors import ConfigError
from se_local.eval.passkey import build_prompt, is_correct, passkey_key
from se_local.eval.ppl import default_text, score_logits

THREADS = 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# Pure logic (no native library)
# ---------------------------------------------------------------------------


def fake_tokenize(text):
    """One token per character: lengths and positions are easy to reason about."""
    return [ord(c) for c in text]


@pytest.mark.parametrize("n_tokens", [400, 401, 977])
@pytest.mark.parametrize("depth", [0.0, 0.1, 0.25, 0.5, 0.73, 0.9, 1.0])
def test_prompt_puts_the_key_at_the_requested_depth(n_tokens, depth):
    p = build_prompt(fake_tokenize, n_tokens, depth, "12345", bos=1)
    assert len(p.tokens) == n_tokens
    assert p.tokens[0] == 1
    key_sentence = fake_tokenize(" The pass key is 12345. Remember it. 12345 is the pass key.")
    assert p.tokens[p.key_start:p.key_start + p.key_len] == key_sentence
    # within one token of the requested depth of the haystack
    assert abs((p.key_start - p.prefix_len) - depth * p.haystack_len) <= 1
    assert abs(p.actual_depth - depth) <= 1 / p.haystack_len
    text = "".join(chr(t) for t in p.tokens[1:])
    assert text.startswith("There is an important info")
    assert text.endswith("What is the pass key? The pass key is")
    # whole filler sentences around the key
    if 0 < p.key_start - p.prefix_len:
        assert text[: p.key_start - 1].endswith("again.")
    if p.prefix_len + p.haystack_len - p.key_start >= 20:  # 20+ filler tokens after the key
        assert text[p.key_start + p.key_len - 1:].startswith(" The grass is green.")


def test_prompt_errors():
    with pytest.raises(ConfigError):
        build_prompt(fake_tokenize, 50, 0.5, "12345")
    with pytest.raises(ConfigError):
        build_prompt(fake_tokenize, 500, 1.5, "12345")


def test_keys_are_random_but_reproducible():
    keys = {passkey_key(0, 8192, d, t) for d in (0.1, 0.5) for t in range(5)}
    assert len(keys) == 10 and all(len(k) == 5 and k.isdigit() for k in keys)
    assert passkey_key(0, 8192, 0.5, 1) == passkey_key(0, 8192, 0.5, 1)
    assert passkey_key(1, 8192, 0.5, 1) != passkey_key(0, 8192, 0.5, 1)
    assert is_correct(" 71432. Remember", "71432") and not is_correct(" 7143", "71432")


def test_score_logits_is_the_negative_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 50)).astype(np.float32) * 5
    targets = rng.integers(0, 50, size=7)
    got = score_logits(logits, targets)
    x = logits.astype(np.float64)
    want = -np.log(np.exp(x)[np.arange(7), targets] / np.exp(x).sum(axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_default_text_is_the_debian_licences():
    try:
        text, names = default_text()
    except ConfigError:
        pytest.skip("no /usr/share/common-licenses here")
    assert names == sorted(names) and len(set(names)) == len(names)
    assert "GPL-3" in names and "GPL" not in names  # the symlink GPL -> GPL-3 counted once
    assert "Apache License" in text


def test_methods_are_configured_from_the_planner():
    from se_local.eval.methods import configure, parse_methods

    assert parse_methods("all") == ["se", "vanilla", "grp-attn", "yarn", "linear"]
    with pytest.raises(ConfigError):
        parse_methods("se,bogus")
    for m in ("se", "vanilla", "grp-attn", "yarn", "linear"):  # within L: plain attention
        s = configure(m, 8192, 8192)
        assert s.G == 1 and s.rope_scale == 1.0
    assert (configure("se", 8192, 16384).G, configure("se", 8192, 16384).W) == (6, 1024)
    g = configure("grp-attn", 8192, 16384)
    assert g.G == 6 and g.W % g.G == 0 and g.W <= 1024
    assert configure("yarn", 8192, 32768).rope_scale == 4.0
    assert configure("linear", 8192, 16384).rope_scale == 2.0
    assert configure("se", 8192, 16384, group=8, window=512).G == 8


# ---------------------------------------------------------------------------
# On the tiny model (L = 256)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(oracle_tiny_llama_factory, pkg_native):
    path, _, hparams = oracle_tiny_llama_factory("f32")
    assert hparams["n_ctx_train"] == 256
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny):
    from se_local.eval.methods import NativeModel

    nm = NativeModel(tiny)
    yield nm
    nm.close()


@pytest.mark.parametrize("depth", [0.0, 0.3, 0.5, 1.0])
def test_prompt_on_the_real_tokenizer(tiny_model, depth):
    nm = tiny_model
    p = build_prompt(nm.tokenize, 700, depth, passkey_key(0, 700, depth, 0), bos=nm.bos)
    assert len(p.tokens) == 700
    assert abs((p.key_start - p.prefix_len) - depth * p.haystack_len) <= 1
    text = nm.detokenize(p.tokens[p.key_start:p.key_start + p.key_len]).replace("\u2581", " ")
    assert text.strip().startswith(f"The pass key is {p.key}.")


@pytest.mark.parametrize("method", ["se", "vanilla", "grp-attn", "yarn", "linear"])
def test_each_method_runs_past_L(tiny_model, method):
    from se_local.eval.methods import Runner, configure

    nm = tiny_model
    spec = configure(method, nm.L, 1024)
    assert (spec.G > 1) == (method in ("se", "grp-attn"))
    tokens = [int(t) for t in np.random.default_rng(1).integers(3, nm.n_vocab, size=900)]
    with Runner(nm, spec, n_threads=THREADS) as r:
        assert r.kv_bytes > 0 and r.self_extend == (method == "se")
        if r.kv_bytes_logged is not None:
            assert abs(r.kv_bytes_logged - r.kv_bytes) <= 0.01 * 2**20
        r.eval(tokens)
        out = r.greedy(5)
        assert 0 < len(out) <= 5 and np.isfinite(r.last_logits()).all()
        pos_max = nm.lc.llama_memory_seq_pos_max(r.mem, 0)
        if method == "grp-attn":  # positions compressed by the KV-cache division
            assert pos_max + 1 == r.n_past < r.n_tokens
            assert r.n_past <= spec.W + r.n_batch + r.n_tokens // spec.G
        else:
            assert pos_max + 1 == r.n_tokens


def test_prefix_reuse_is_exact(tiny_model):
    from se_local.eval.methods import Runner, configure

    nm = tiny_model
    spec = configure("se", nm.L, 1024)
    rng = np.random.default_rng(2)
    a = [int(t) for t in rng.integers(3, nm.n_vocab, size=800)]
    b = a[:500] + [int(t) for t in rng.integers(3, nm.n_vocab, size=300)]
    with Runner(nm, spec, n_threads=THREADS) as r:
        r.eval_prompt(b)
        fresh = r.last_logits().copy()
        r.eval_prompt(a)
        assert r.eval_prompt(b) == 500
        np.testing.assert_allclose(r.last_logits(), fresh, atol=1e-3)


def test_ppl_follows_the_llama_perplexity_protocol(tiny, tiny_model, tmp_path):
    from se_local.eval.methods import Runner, configure
    from se_local.eval.ppl import PplConfig, run_ppl

    text_file = tmp_path / "text.txt"
    text_file.write_text(" ".join(f"word{i % 37} and more" for i in range(400)))
    n = 128
    data = run_ppl(PplConfig(model=tiny, file=str(text_file), lengths=[n], methods=["vanilla"], windows=2,
                             threads=THREADS), tmp_path / "out")
    (row,) = data["results"]
    assert row["windows"] == 2 and row["scored_tokens"] == 2 * (n // 2 - 1)

    # the same by hand: every logit of each window, second half scored
    nm = tiny_model
    tokens = nm.tokenize(text_file.read_text(), add_special=True)
    nll = []
    with Runner(nm, configure("vanilla", nm.L, n), n_threads=THREADS) as r:
        for i in range(2):
            w = list(tokens[i * n:(i + 1) * n])
            w[0] = nm.bos
            got = {}
            r.reset()
            r.eval(w, outputs_from=0, on_logits=lambda i0, lg: got.update({i0 + j: lg[j].copy() for j in range(len(lg))}))
            for pos in range(n // 2, n - 1):
                lg = got[pos].astype(np.float64)
                nll.append(np.log(np.exp(lg - lg.max()).sum()) + lg.max() - lg[w[pos + 1]])
    assert row["ppl"] == pytest.approx(math.exp(np.mean(nll)), rel=1e-6)
    assert row["ppl_err"] > 0


@pytest.fixture(scope="module")
def tiny512(oracle_tiny_llama_factory, pkg_native):
    """The tiny llama with L = 512: room for the passkey prompt's fixed parts (byte tokens)."""
    return oracle_tiny_llama_factory("f32", n_ctx_train=512)[0]


def test_passkey_json_resume_and_plots(tiny512, tmp_path):
    tiny = tiny512
    from se_local.eval import passkey as pk
    from se_local.eval.plot import passkey_heatmaps, ppl_plot
    from se_local.eval.ppl import PplConfig, run_ppl

    out = tmp_path / "ev"
    cfg = pk.PasskeyConfig(model=tiny, lengths=[512, 1024], depths=[0.2, 0.8], methods=["se", "vanilla", "yarn"],
                           threads=THREADS)
    data = pk.run_passkey(cfg, out)
    saved = json.loads((out / "passkey.json").read_text())
    assert saved == json.loads(json.dumps(data))
    assert saved["schema"] == pk.SCHEMA and saved["model"]["L"] == 512
    assert len(saved["runs"]) == 2 * 2 * 3
    for r in saved["runs"]:
        assert {"method", "length", "depth", "trial", "key", "answer", "correct", "n_tokens", "key_token",
                "actual_depth", "prefill_s", "spec"} <= set(r)
        assert r["n_tokens"] <= r["length"] - cfg.max_new_tokens
        assert r["correct"] == (r["key"] in r["answer"])
    # within L every method is plain attention: computed once, recorded for each
    within = [r for r in saved["runs"] if r["length"] == 512]
    assert {r.get("same_as") for r in within if r["method"] != "se"} == {"se"}
    assert {r["spec"]["G"] for r in saved["runs"] if r["method"] == "se" and r["length"] == 1024} == {8}
    assert {r["spec"]["rope_scale"] for r in saved["runs"] if r["method"] == "yarn" and r["length"] == 1024} == {2}

    # resume: nothing recomputed; extending adds only the new runs
    calls = []
    pk.run_passkey(cfg, out, progress=lambda d, t, w: calls.append(w))
    assert all(w.endswith("(done)") for w in calls)
    cfg.depths = [0.2, 0.8, 0.5]
    data = pk.run_passkey(cfg, out)
    assert len(data["runs"]) == 2 * 3 * 3
    with pytest.raises(ConfigError):
        pk.run_passkey(pk.PasskeyConfig(model=tiny, lengths=[512], depths=[0.5], seed=7, threads=THREADS), out)

    lengths, depths, grid = pk.accuracy_grid(data, "se")
    assert lengths == [512, 1024] and depths == [0.2, 0.5, 0.8]
    assert all(v in (0.0, 1.0) for row in grid for v in row)
    pngs = passkey_heatmaps(data, out)
    assert [p.name for p in pngs] == ["passkey_se.png", "passkey_vanilla.png", "passkey_yarn.png"]

    text_file = tmp_path / "text.txt"
    text_file.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    pdata = run_ppl(PplConfig(model=tiny, file=str(text_file), lengths=[128, 512], methods=["se", "vanilla"],
                              windows=1, threads=THREADS), out)
    assert json.loads((out / "ppl.json").read_text())["schema"] == "se-local/eval-ppl/1"
    assert {(r["method"], r["length"]) for r in pdata["results"]} == {
        ("se", 128), ("vanilla", 128), ("se", 512), ("vanilla", 512)}
    pngs.append(ppl_plot(pdata, out / "ppl.png"))
    for p in pngs:
        blob = p.read_bytes()
        assert blob[:8] == PNG_MAGIC and len(blob) < 100_000


def test_bench_json_schema(tiny, pkg_native, tmp_path):
    from se_local.eval.bench import BenchConfig, VARIANTS, run_bench, summary_table

    out = tmp_path / "bench.json"
    cfg = BenchConfig(model=tiny, depths=[0, 300], variants=list(VARIANTS), repeat=2, chunk=16, gen=4,
                      threads=THREADS, libs=[str(pkg_native.LIB_DIR)], stream_prompt=32, stream_gen=8)
    seen = []
    result = run_bench(cfg, progress=lambda d, t, w: seen.append((d, t)), out_path=out)
    assert seen[-1][0] == seen[-1][1]
    saved = json.loads(out.read_text())
    assert saved["schema"] == "se-local/bench/1"
    assert {"host", "model", "config", "libs", "setup", "runs", "summary", "streaming"} <= set(saved)
    assert [lib["label"] for lib in saved["libs"]] == ["default", str(pkg_native.LIB_DIR)]
    assert all(lib["has_self_extend"] for lib in saved["libs"])
    assert len(saved["runs"]) == 2 * 2 * len(VARIANTS) * 2  # depths x libs x variants x repeats
    for r in saved["runs"]:
        assert r["prefill_tokens"] == 16 and r["decode_tokens"] == 4
        assert r["prefill_tps"] > 0 and r["decode_tps"] > 0
    for s in saved["setup"]:
        assert s["kv_bytes"] > 0 and s["n_ctx"] >= s["depth"] + 16
    base = [s for s in saved["summary"] if s["lib"] == "default" and s["variant"] == "fa"]
    assert len(base) == 2 and all(s["prefill_ratio"] == 1.0 and s["decode_ratio"] == 1.0 for s in base)
    st = saved["streaming"]
    assert st["model_generate_tps_median"] > 0 and st["raw_loop_tps_median"] > 0 and st["ratio"] > 0
    assert summary_table(result).row_count == len(saved["summary"])


def test_cli(tiny, tiny512, pkg_cli, tmp_path):
    out = tmp_path / "cli"
    r = pkg_cli("eval", "passkey", "-m", tiny512, "--lengths", "1024", "--depths", "0.5", "--method", "se,grp-attn",
                "--out", out, "--threads", THREADS)
    assert r.returncode == 0, r.stderr
    assert "passkey retrieval" in r.stdout and "grp-attn" in r.stdout
    assert (out / "passkey.json").is_file() and (out / "passkey_grp-attn.png").is_file()

    r = pkg_cli("bench", "-m", tiny, "--ctx", "0,300", "--repeat", "1", "--chunk", "16", "--gen", "4",
                "--threads", THREADS, "--out", out / "bench.json", "--no-streaming")
    assert r.returncode == 0, r.stderr
    assert "x fa" in r.stdout and json.loads((out / "bench.json").read_text())["streaming"] is None

    r = pkg_cli("eval", "passkey", "-m", tiny, "--depths", "0.5,2", "--out", out)
    assert r.returncode == 2 and "depths" in r.stderr
    r = pkg_cli("eval", "ppl", "-m", tiny, "--method", "nope", "--out", out)
    assert r.returncode == 2 and "unknown method" in r.stderr


def test_bench_on_a_library_without_self_extend(tiny, pkg_native, monkeypatch):
    # what a stock (unpatched) build given with --lib looks like to the worker
    from se_local.eval.bench import BenchConfig, run_bench

    monkeypatch.setattr(pkg_native, "HAS_SELF_EXTEND", False)
    result = run_bench(BenchConfig(model=tiny, depths=[64], variants=["se", "fa"], repeat=1, chunk=8, gen=2,
                                   threads=THREADS, streaming=False))
    assert [s.get("error") for s in result["setup"]] == ["library without Self-Extend", None]
    assert [(s["variant"], s["prefill_ratio"]) for s in result["summary"]] == [("fa", 1.0)]


def test_grp_attn_division_moves_keys_exactly(tiny_model):
    """A lone token's state does not depend on its position, so after moving it from
    position 400 to 100 the next token at 101 must see exactly what it sees at 1 after
    a token at 0. The harness's division does that; llama.cpp's seq_div (pinned
    version) re-rotates the key the wrong way (the reason grp-attn does not use it)."""
    from se_local.eval.methods import MethodSpec, Runner

    nm, lc = tiny_model, tiny_model.lc

    def decode(r, tokens, positions):
        b = r._batch
        for k, (t, p) in enumerate(zip(tokens, positions)):
            b.token[k], b.pos[k], b.n_seq_id[k], b.logits[k] = t, p, 1, k == len(tokens) - 1
            b.seq_id[k][0] = 0
        b.n_tokens = len(tokens)
        assert lc.llama_decode(r.ctx, b) == 0
        return np.ctypeslib.as_array(lc.llama_get_logits(r.ctx), shape=(1, nm.n_vocab))[0].copy()

    with Runner(nm, MethodSpec("vanilla", 1024, nm.L), n_threads=THREADS) as r:
        want = decode(r, [5, 77], [0, 1])
        r.reset()
        decode(r, [5], [400])
        r._seq_div(0, 401, 4)
        assert lc.llama_memory_seq_pos_max(r.mem, 0) == 100
        np.testing.assert_allclose(decode(r, [77], [101]), want, atol=1e-2)
        r.reset()
        decode(r, [5], [400])
        lc.llama_memory_seq_div(r.mem, 0, 0, 401, 4)
        upstream = decode(r, [77], [101])
    print("llama_memory_seq_div max logit error:", float(np.abs(upstream - want).max()))
