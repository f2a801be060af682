"""The Hugging Face libraries (huggingface_hub, datasets, transformers): quiet, and quick to
fail without the network.

`quiet()` silences the libraries' progress bars, info and warning logs and Python
warnings: the CLI's stderr holds its own progress and one `error:` line, nothing else.
`unreachable()` says, within a few seconds, why the hub cannot be reached (or None), so
that a hub name fails with one line at once instead of after the libraries' retries
(about 25 s of "Retrying in 8s" lines).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings
from urllib.parse import urlsplit

PROBE_SECONDS = 5.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def quiet() -> None:
    """Silence the Hugging Face libraries imported so far (call it after importing one)."""
    warnings.filterwarnings("ignore", module=r"(huggingface_hub|datasets|transformers)(\.|$)")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars
        from huggingface_hub.utils import logging as hub_logging

        disable_progress_bars()
        hub_logging.set_verbosity_error()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()


def offline_mode() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: the libraries then use only
    their local cache, and fail fast by themselves."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def unreachable() -> str | None:
    """Why the hub (HF_ENDPOINT) cannot be reached now, in a few words; None when it answers,
    in offline mode (nothing is fetched then), or when a proxy server is configured (the
    connection goes through it: the libraries are left to try)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    url = urlsplit(constants.ENDPOINT)
    host = url.hostname or constants.ENDPOINT
    port = url.port or (80 if url.scheme == "http" else 443)
    failure: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
        except OSError as e:  # socket.gaierror (no name service) included
            failure.append(e.strerror or str(e) or type(e).__name__)

    # in a thread: a name lookup does not obey the socket timeout
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 1)
    if thread.is_alive():
        return f"{host} did not answer within {PROBE_SECONDS:.0f} s"
    return f"{host}: {failure[0]}" if failure else None
