"""The se-local command through a subprocess: exit codes, stdout purity, plan output, errors."""

import pytest

from se_local.cli import parse_token_count

RUN = ["--target-ctx", "1024", "--threads", "2", "--temp", "0"]


def one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "text, n",
    [("32768", 32768), ("16k", 16384), ("16K", 16384), ("1M", 1048576), (" 8k ", 8192), ("1.5k", 1536)],
)
def test_parse_token_count(text, n):
    assert parse_token_count(text) == n


@pytest.mark.parametrize("text", ["", "abc", "-5", "0", "1.5", "16g", "0.0001k"])
def test_parse_token_count_rejects(text):
    with pytest.raises(ValueError):
        parse_token_count(text)


def test_version(pkg_cli):
    r = pkg_cli("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("se-local 0.1.0")
    assert r.stderr == ""


def test_no_arguments_shows_help(pkg_cli):
    r = pkg_cli()
    assert r.returncode == 2
    assert "run" in r.stdout + r.stderr and "plan" in r.stdout + r.stderr


@pytest.mark.parametrize("target", ["32768", "32k"])
def test_plan(pkg_cli, target):
    r = pkg_cli("plan", "--target-ctx", target)
    assert r.returncode == 0, r.stderr
    rows = {
        line.split()[0]: line.split()[1]
        for line in r.stdout.splitlines()
        if line and not line.startswith(" ")
    }
    assert (rows["L"], rows["N"], rows["G"], rows["W"], rows["reach"]) == (
        "8192",
        "32768",
        "11",
        "1024",
        "79872",
    )
    assert "4096 > 1024 + (32768-1024)/11 = 3909.8" in r.stdout
    assert r.stderr == ""


def test_plan_user_group_breaking_the_rule_warns(pkg_cli):
    r = pkg_cli("plan", "--target-ctx", "16k", "--group", "4")
    assert r.returncode == 0
    assert "warning:" in r.stderr and "warning" not in r.stdout


def test_plan_unreachable(pkg_cli):
    r = pkg_cli("plan", "--target-ctx", "100000", "--group", "11")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "79872" in one_error_line(r.stderr)


def test_plan_usage_errors(pkg_cli):
    assert pkg_cli("plan").returncode == 2  # --target-ctx is required
    r = pkg_cli("plan", "--target-ctx", "lots")
    assert r.returncode == 2 and r.stdout == ""


def test_info(pkg_cli):
    r = pkg_cli("info")
    assert r.returncode == 0, r.stderr
    assert "8192" in r.stdout and "llama" in r.stdout and "9 / 3" in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize(
    "cmd",
    [
        ["info", "{missing}"],
        ["plan", "-m", "{missing}", "--target-ctx", "16k"],
        ["run", "-m", "{missing}", "hi"],
    ],
)
def test_missing_model_file(pkg_cli, tmp_path, cmd):
    missing = str(tmp_path / "missing.gguf")
    r = pkg_cli(*[c.format(missing=missing) for c in cmd])
    assert r.returncode == 1
    assert r.stdout == ""
    assert "model file not found" in one_error_line(r.stderr)
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(pkg_cli, tmp_path):
    r = pkg_cli("--debug", "info", tmp_path / "missing.gguf")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ModelFileError" in r.stderr


def _chat_answer(smollm2, prompt, n):
    """The reference's greedy answer of n tokens to one user message."""
    tokens = smollm2.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True)
    return "".join(smollm2.generate(tokens, max_tokens=n, temperature=0))


def test_run_stdout_is_only_the_generated_text(pkg_cli, smollm2):
    prompt = "Tell me a story about a lighthouse."
    r = pkg_cli("run", prompt, "-n", "16", *RUN)
    assert r.returncode == 0, r.stderr
    assert r.stdout == _chat_answer(smollm2, prompt, 16)
    assert "prompt" in r.stderr and "tok/s" in r.stderr and "Self-Extend off" in r.stderr


def test_run_status_line_starts_its_own_line_when_stderr_shares_stdout(pkg_cli, smollm2):
    # `se-local run ... 2>&1 | tee log`: the text (here not ending in a line break) then the status line on a line
    # of its own; with separate streams stdout stays exactly the text (the test above)
    prompt = "Tell me a story about a lighthouse."
    r = pkg_cli("run", prompt, "-n", "16", *RUN, merge_stderr=True)
    assert r.returncode == 0, r.stdout
    text = _chat_answer(smollm2, prompt, 16)
    assert not text.endswith("\n")
    assert text + "\nprompt " in r.stdout


def test_run_raw_prompt_from_stdin(pkg_cli, smollm2):
    prompt = "Once upon a time, in a small village by the sea,"
    r = pkg_cli("run", "--raw", "-n", "8", *RUN, input=prompt)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(smollm2.generate(prompt, max_tokens=8, temperature=0))


def test_prompt_file_then_argument(tmp_path):
    from se_local.cli import _read_prompt

    f = tmp_path / "doc.txt"
    f.write_text("The passkey is 4321.\n\n")
    assert _read_prompt("What is the passkey?", f) == "The passkey is 4321.\n\nWhat is the passkey?"
    assert _read_prompt(None, f) == "The passkey is 4321.\n\n"
    assert _read_prompt("only", None) == "only"


def test_run_without_prompt(pkg_cli):
    r = pkg_cli("run", *RUN, input="")
    assert r.returncode == 2 and r.stdout == ""


def test_run_prompt_too_long(pkg_cli):
    r = pkg_cli("run", "--raw", "word " * 600, "--target-ctx", "256", "--threads", "2")
    assert r.returncode == 1
    assert r.stdout == ""
    line = one_error_line(r.stderr)
    assert "tokens but the context holds 256" in line and "--target-ctx" in line


def test_run_missing_prompt_file(pkg_cli, tmp_path):
    r = pkg_cli("run", "-f", tmp_path / "nope.txt", *RUN)
    assert r.returncode == 1 and r.stdout == ""
    assert "cannot read the prompt file" in one_error_line(r.stderr)


def test_run_status_names_the_portable_path(pkg_cli, pkg_native):
    """The status line says when Self-Extend runs through the portable path (here: --no-flash-attn)."""
    if not pkg_native.HAS_SELF_EXTEND:
        pytest.skip("the library has no Self-Extend")
    r = pkg_cli("run", "--raw", "Hi", "-n", "1", "--target-ctx", "16k", "--threads", "2", "--temp", "0",
                "--no-flash-attn")
    assert r.returncode == 0, r.stderr
    assert "Self-Extend G=6 W=1024, portable path" in r.stderr
    r = pkg_cli("run", "--raw", "Hi", "-n", "1", "--target-ctx", "16k", "--threads", "2", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert "Self-Extend G=6 W=1024 (L=8192" in r.stderr
