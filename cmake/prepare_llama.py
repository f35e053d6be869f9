#!/usr/bin/env python3
"""Obtain the pinned llama.cpp source, verify it, and lay it out patched.

llama.cpp is not vendored in this repository. It is taken from the source
distribution of llama-cpp-python (which carries llama.cpp at the matching
commit under vendor/llama.cpp), fetched by name and version with
``pip download``, checked against a pinned sha256, and cached in a user-level
folder so that later builds work offline.

The patched tree is updated in place and only files whose content changes are
rewritten, so a build directory that is kept between builds recompiles only
what a patch touches.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PREFIX = "vendor/llama.cpp/"
# Upstream folders the libraries do not need (models alone is 75 MB).
SKIP_TOP = {"models", "docs", "media", "benches", "examples", "pocs", "app", "tools"}
STAMP = ".se_local_patches"


def log(msg: str) -> None:
    print(f"-- se-local: {msg}", flush=True)


def cache_dir() -> Path:
    env = os.environ.get("SE_LOCAL_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "se-local"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "se-local"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(version: str, sha256: str) -> Path:
    name = f"llama_cpp_python-{version}.tar.gz"
    dest = cache_dir() / name
    if dest.exists() and sha256_of(dest) == sha256:
        log(f"using cached {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading llama-cpp-python=={version} (source distribution) with pip")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
               "--no-binary", "llama-cpp-python", "--disable-pip-version-check",
               f"llama-cpp-python=={version}", "-d", tmp]
        r = subprocess.run(cmd)
        got = Path(tmp) / name
        if r.returncode != 0 or not got.exists():
            sys.exit(f"se-local: could not download llama-cpp-python=={version}; "
                     f"place {name} in {dest.parent} (or set SE_LOCAL_CACHE) and build again")
        digest = sha256_of(got)
        if digest != sha256:
            sys.exit(f"se-local: sha256 mismatch for {name}: got {digest}, want {sha256}")
        shutil.move(str(got), dest)
    return dest


def extract_pristine(sdist: Path, sha256: str, pristine: Path) -> None:
    stamp = pristine / ".se_local_sha256"
    if stamp.exists() and stamp.read_text().strip() == sha256:
        return
    if pristine.exists():
        shutil.rmtree(pristine)
    log(f"extracting llama.cpp into {pristine}")
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            _, _, rel = m.name.partition("/")
            if not rel.startswith(PREFIX) or not (m.isfile() or m.isdir()):
                continue
            rel = rel[len(PREFIX):]
            if not rel or rel.split("/", 1)[0] in SKIP_TOP:
                continue
            out = pristine / rel
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(out, 0o755 if m.mode & 0o111 else 0o644)
    stamp.write_text(sha256)


def touched_files(patch: Path) -> list[str]:
    files = []
    for line in patch.read_text(encoding="utf-8", errors="replace").splitlines():
        for tag in ("--- a/", "+++ b/"):
            if line.startswith(tag):
                files.append(line[len(tag):].split("\t")[0].strip())
    return sorted(set(files))


def apply_patches(pristine: Path, dest: Path, patches: list[Path]) -> None:
    if not dest.exists():
        log(f"copying llama.cpp into {dest}")
        shutil.copytree(pristine, dest, ignore=shutil.ignore_patterns(".se_local_sha256"))
        (dest / STAMP).write_text("")

    before = set(filter(None, (dest / STAMP).read_text().splitlines())) if (dest / STAMP).exists() else set()
    now = set()
    for p in patches:
        now.update(touched_files(p))
    every = sorted(before | now)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rel in every:
            src = pristine / rel
            if src.exists():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, work / rel)
        if shutil.which("git"):
            apply = ["git", "apply", "--whitespace=nowarn"]
        elif shutil.which("patch"):
            apply = ["patch", "-p1", "--forward", "--batch", "--quiet", "-i"]
        else:
            sys.exit("se-local: applying patches needs git or patch on PATH")
        for p in patches:
            r = subprocess.run(apply + [str(p)], cwd=work, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"se-local: patch {p.name} does not apply to llama.cpp:\n{r.stderr}{r.stdout}")
        changed = 0
        for rel in every:
            want = work / rel
            have = dest / rel
            if want.exists():
                data = want.read_bytes()
                if not have.exists() or have.read_bytes() != data:
                    have.parent.mkdir(parents=True, exist_ok=True)
                    have.write_bytes(data)
                    changed += 1
            elif have.exists():
                have.unlink()
                changed += 1
    (dest / STAMP).write_text("\n".join(sorted(now)))
    log(f"{len(patches)} patch(es) applied, {changed} file(s) rewritten")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--version", required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--work", required=True, type=Path, help="folder for the pristine and patched trees")
    ap.add_argument("--patches", nargs="*", default=[], type=Path)
    ap.add_argument("--source", type=Path, default=None,
                    help="an unpacked, unpatched llama.cpp tree to use instead of the sdist (offline machines)")
    ap.add_argument("--pristine-only", action="store_true", help="lay out the unpatched tree only")
    args = ap.parse_args()

    if args.source:
        pristine = args.source.resolve()
        if not (pristine / "ggml" / "include" / "ggml.h").exists():
            sys.exit(f"se-local: {pristine} is not a llama.cpp source tree")
        log(f"using the llama.cpp tree at {pristine} (not the verified sdist)")
    else:
        sdist = fetch_sdist(args.version, args.sha256)
        pristine = args.work / "llama.cpp-pristine"
        extract_pristine(sdist, args.sha256, pristine)
    if not args.pristine_only:
        apply_patches(pristine, args.work / "llama.cpp", sorted(args.patches, key=lambda p: p.name))


if __name__ == "__main__":
    main()
