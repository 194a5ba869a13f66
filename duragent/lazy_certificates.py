"""aiohttp with its default TLS contexts reading the system's CA certificates on first use.

`aiohttp.connector` builds two SSL contexts when it is imported and reads the CA bundle into
both: ~80 ms of CPU here, an eighth of a `duragent serve` start, whether or not the process ever
opens an https connection (a local model, the offline provider, a server only clients talk to).
`import_aiohttp()` imports aiohttp with that reading held back; each context reads the
certificates just before it first wraps a connection or is asked about them, so nothing is ever
verified against an empty store.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any, cast

#: Loads are rare and short; one lock for every context keeps a context from loading twice.
_LOADING = threading.Lock()
_PENDING = "_duragent_pending_certificate_loads"
_HELD_BACK = ("load_default_certs", "set_default_verify_paths")


class _CertificatesOnFirstUse(ssl.SSLContext):
    """A context whose held-back certificate loads run before anything that needs them."""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        """Load the certificates, then wrap as any context does."""
        _load_held_back(self)
        return ssl.SSLContext.wrap_socket(self, *args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
        """Load the certificates, then wrap as any context does (asyncio's TLS goes through here)."""
        _load_held_back(self)
        return ssl.SSLContext.wrap_bio(self, *args, **kwargs)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        """The CA certificates, loaded first."""
        _load_held_back(self)
        return ssl.SSLContext.get_ca_certs(self, binary_form)

    def cert_store_stats(self) -> Any:
        """Counts of the store, loaded first."""
        _load_held_back(self)
        return ssl.SSLContext.cert_store_stats(self)


def _load_held_back(context: ssl.SSLContext) -> None:
    with _LOADING:
        if type(context) is not _CertificatesOnFirstUse:
            return  # another thread loaded them meanwhile
        for load, args in context.__dict__.pop(_PENDING, ()):
            load(context, *args)
        context.__class__ = cast("type[_CertificatesOnFirstUse]", ssl.SSLContext)  # a plain context again


def _hold_back(name: str, load: Callable[..., None]) -> Callable[..., None]:
    def held_back(context: ssl.SSLContext, *args: Any) -> None:
        if type(context) not in (ssl.SSLContext, _CertificatesOnFirstUse):
            load(context, *args)  # someone's own subclass: not ours to change
            return
        context.__dict__.setdefault(_PENDING, []).append((load, args))
        context.__class__ = _CertificatesOnFirstUse

    held_back.__name__ = name
    return held_back


def import_aiohttp() -> None:
    """Import aiohttp, its default contexts loading their CA certificates on first use.

    Does nothing more than `import aiohttp` when aiohttp is already imported.
    """
    if "aiohttp.connector" in sys.modules:
        return
    originals = {name: ssl.SSLContext.__dict__.get(name) for name in _HELD_BACK}
    for name in _HELD_BACK:
        setattr(ssl.SSLContext, name, _hold_back(name, getattr(ssl.SSLContext, name)))
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(ssl.SSLContext, name)  # inherited from the C type again
            else:
                setattr(ssl.SSLContext, name, original)
