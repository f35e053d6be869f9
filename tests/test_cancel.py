"""Cancelling: Model.cancel() and Ctrl-C stop a prefill within one micro-batch; the model stays usable.

"Usable" is checked the strict way: after the interruption, the same model gives the
same greedy tokens as a freshly opened one, and a prefill resumed from the cached
prefix (``reuse_cache=True``) equals an uninterrupted one.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from se_local import Model
from tinymodel import write_tiny_llama

N_BATCH = 64
TARGET = 16384
THREADS = 2
PROMPT = [3 + (i * 7919) % 317 for i in range(16000)]  # 16k token ids of the tiny vocabulary


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory, pkg_native):
    p = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_llama(p, n_ctx_train=256)
    return p


def _open(path):
    return Model(path, target_ctx=TARGET, n_threads=THREADS, n_batch=N_BATCH)


def _tokens(model, prompt, **kwargs):
    return [r.token for r in model.stream_generate(prompt, max_tokens=8, temperature=0, **kwargs)]


@pytest.fixture(scope="module")
def fresh(tiny_path):
    """Greedy tokens of a freshly opened model, by prompt length."""
    with _open(tiny_path) as m:
        return {n: _tokens(m, PROMPT[:n]) for n in (300, 1024)}


def _wait_for(cond, what, timeout=600.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_cancel_from_another_thread_during_a_16k_prefill(tiny_path, fresh):
    m = _open(tiny_path)
    assert m.self_extend_active or not pkg_has_self_extend()
    done, out, errors = [], [], []

    def generate():
        try:
            for r in m.stream_generate(PROMPT, max_tokens=8, temperature=0, progress=lambda d, t: done.append(d)):
                out.append(r)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker = threading.Thread(target=generate)
    worker.start()
    _wait_for(lambda: len(done) >= 3, "three micro-batches")
    at_cancel = done[-1]
    m.cancel()
    worker.join(timeout=600)
    assert not worker.is_alive() and not errors, errors
    assert [(r.finish_reason, r.token, r.text) for r in out] == [("cancelled", -1, "")]
    assert done[-1] - at_cancel <= N_BATCH, "more than one micro-batch ran after cancel()"
    assert done[-1] < len(PROMPT)
    assert m.n_past == done[-1] and m.n_past % N_BATCH == 0  # finished micro-batches stay, recorded
    # the same model, after the interruption, equals a fresh one
    assert _tokens(m, PROMPT[:300]) == fresh[300]
    m.close()


def pkg_has_self_extend():
    from se_local import _lib

    return _lib.HAS_SELF_EXTEND


def test_cancelled_prefill_resumes_from_its_cache(tiny_path, fresh):
    m = _open(tiny_path)
    stop_at = 512

    def progress(done, total):
        if done >= stop_at:
            m.cancel()  # from the generating thread itself: the next micro-batch does not start

    out = list(m.stream_generate(PROMPT[:1024], max_tokens=8, temperature=0, progress=progress))
    assert out[-1].finish_reason == "cancelled" and len(out) == 1
    assert m.n_past == stop_at
    resumed = list(m.stream_generate(PROMPT[:1024], max_tokens=8, temperature=0, reuse_cache=True))
    assert resumed[-1].cached_tokens == stop_at
    assert [r.token for r in resumed] == fresh[1024]
    m.close()


def test_keyboard_interrupt_during_prefill_leaves_the_model_usable(tiny_path, fresh):
    m = _open(tiny_path)

    def progress(done, total):
        if done >= 256:
            raise KeyboardInterrupt  # what Ctrl-C does: Python sees it between micro-batches

    with pytest.raises(KeyboardInterrupt):
        list(m.stream_generate(PROMPT[:1024], max_tokens=8, temperature=0, progress=progress))
    assert m.n_past == 256
    assert _tokens(m, PROMPT[:300]) == fresh[300]  # the model is free again, and consistent
    m.close()


def test_cancel_during_generation(tiny_path, fresh):
    m = _open(tiny_path)
    got = []
    for r in m.stream_generate(PROMPT[:300], max_tokens=8, temperature=0):
        got.append(r)
        if len(got) == 3:
            m.cancel()
    assert [r.token for r in got[:3]] == fresh[300][:3]
    assert got[3].finish_reason == "cancelled" and len(got) == 4
    assert _tokens(m, PROMPT[:300]) == fresh[300]
    m.close()


def test_cancel_when_idle_does_nothing(tiny_path, fresh):
    m = _open(tiny_path)
    m.cancel()
    assert _tokens(m, PROMPT[:300]) == fresh[300]
    m.close()


def test_ctrl_c_in_the_cli_during_prefill(smollm2_path, tmp_path):
    """SIGINT during a long prefill: exit 130, a short note on stderr, nothing on stdout, no traceback."""
    doc = tmp_path / "long.txt"
    doc.write_text("The quick brown fox jumps over the lazy dog. " * 1400)  # ~14k tokens
    import se_local

    env = dict(os.environ)
    env["PYTHONPATH"] = str(os.path.dirname(os.path.dirname(se_local.__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "se_local", "run", "--raw", "-f", str(doc), "--target-ctx", "16k",
         "--threads", str(THREADS), "-n", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # as from a terminal: undo an "ignore" inherited from a background job that started the tests
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8)
    if proc.poll() is not None:
        pytest.skip("the run ended before the signal")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr
    assert stdout == "" and "Traceback" not in stderr
