"""``guardrail serve``: verification, C2PA Soft Binding Resolution and guarded generation
over HTTP (FastAPI on uvicorn; ``pip install 'guardrail[serve]'``).

* :mod:`.app`: the application (:func:`create_app`) and its endpoints;
* :mod:`.c2pa_api`: the C2PA Soft Binding Resolution API;
* :mod:`.auth`: API keys (stored hashed), scopes, token-bucket rate limits;
* :mod:`.work`: the bounded pools (threads; processes for verification) that keep
  CPU-bound work off the event loop; :mod:`.processes`: what runs in the pool's processes;
* :mod:`.state`: what one worker holds (store, models loaded once) and the blocking work;
* :mod:`.problems`: RFC 9457 problem details and the request size limit;
* :mod:`.metrics`, :mod:`.logs`: Prometheus metrics and JSON logs;
* :mod:`.jumbf`: the active manifest of a manifest store;
* :mod:`.settings`: ``[serve]``.

FastAPI is imported only when the application is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`guardrail.serve.app.create_app`."""
    from .app import create_app as _create

    return _create(*args, **kwargs)
