"""Hypothesis strategies and guards shared by the fault suite.

* :data:`FAULTS`: the settings every property test starts from: derandomized (a fixed
  sample, the same in every run), no example database, no shrinking (a failure shows the
  first failing example; shrinking a memory blow-up would only repeat it), no deadline
  (time is measured by the corpus runner, not asserted in unit tests).
* :func:`damaged`: one of the corpus's kinds of damage applied to given bytes.
* :func:`memory_headroom`: an address-space limit around a call, so that an input that
  makes guardrail allocate gigabytes fails the test with ``MemoryError`` instead of taking
  the shared machine down.
* :func:`tiny_tokenizer` / :class:`TinyTextGenerator`: a byte-level BPE tokenizer trained
  in milliseconds, enough for the KGW text watermark detector.
"""

from __future__ import annotations

import contextlib
import resource
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from guardrail._generator import ModelInfo
from guardrail._types import Modality
from tests.faults import mutate
from tests.faults.corpus import EXTREMES, LBOX_EXTREMES, LENGTH_EXTREMES

__all__ = ["FAULTS", "TinyTextGenerator", "call_with_deadline", "damaged", "memory_headroom",
           "tiny_tokenizer"]

FAULTS = settings(
    derandomize=True, database=None, deadline=None, max_examples=30,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    report_multiple_bugs=False, print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.large_base_example],
)

class Damaged:
    """Damaged bytes and what was done to them; unpacks as ``(change, data)`` and prints
    as the change alone (hypothesis prints the examples that fail)."""

    def __init__(self, change: str, data: bytes) -> None:
        self.change, self.data = change, data

    def __iter__(self) -> Iterator[Any]:
        return iter((self.change, self.data))

    def __repr__(self) -> str:
        return f"<{self.change}: {len(self.data)} bytes>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


_FIELD_VALUES = sorted({v for vs in EXTREMES.values() for v in vs} | set(LENGTH_EXTREMES)
                       | set(LBOX_EXTREMES))


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> Damaged:
    """ ``data`` truncated, with bits flipped (anywhere or in its
    Content Credentials), with bytes inserted, or with a header field or a JUMBF box
    length set to an extreme or arbitrary value."""
    n = len(data)
    fields = mutate.fields(data)
    headers = [f for f in fields if not f.name.startswith("jumbf.")]
    boxes = [f for f in fields if f.name.startswith("jumbf.")]
    region = mutate.c2pa_region(data)
    ops = ["truncate", "flip", "insert"] + (["field"] if headers else []) + (
        ["lbox", "flip_c2pa"] if boxes and region else [])
    op = draw(st.sampled_from(ops))
    if op == "truncate":
        k = draw(st.integers(0, max(0, n - 1)))
        return Damaged(f"first {k} bytes", mutate.truncate(data, k))
    if op == "flip" or (op == "flip_c2pa" and region is None):
        hi = max(0, min(n, draw(st.sampled_from((64, 4096, n)))) * 8 - 1)
        bits = draw(st.lists(st.integers(0, hi), min_size=1, max_size=8))
        return Damaged(f"bits {bits}", mutate.flip_bits(data, bits))
    if op == "flip_c2pa":
        a, b = region  # type: ignore[misc]
        bits = draw(st.lists(st.integers(a * 8, b * 8 - 1), min_size=1, max_size=8))
        return Damaged(f"C2PA bits {bits}", mutate.flip_bits(data, bits))
    if op == "insert":
        off = draw(st.integers(0, n))
        chunk = draw(st.binary(min_size=1, max_size=64))
        return Damaged(f"{len(chunk)} bytes at {off}", mutate.insert(data, off, chunk))
    f = draw(st.sampled_from(headers if op == "field" else boxes))
    top = (1 << (8 * f.width)) - 1
    value = draw(st.one_of(st.sampled_from([v for v in _FIELD_VALUES if v <= top]),
                           st.integers(0, top)))
    return Damaged(f"{f.name}={value}", mutate.set_field(data, f, value))


def _vm_size() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - Linux only


@contextlib.contextmanager
def memory_headroom(gib: float = 3.0) -> Iterator[None]:
    """Limit the process's address space to its current size plus ``gib`` GiB while the
    block runs (allocations beyond raise ``MemoryError``); restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + int(gib * 2**30)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def call_with_deadline(fn: Callable[[], Any], timeout: float,
                       unblock: Callable[[], None] | None = None) -> tuple[bool, Any]:
    """Run ``fn`` in a thread: ``(True, result or raised exception)`` when it finishes
    within ``timeout`` seconds, else ``(False, None)`` after calling ``unblock`` until it
    returns (``unblock`` should make it return, e.g. by opening the other end of a FIFO)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["value"] = exc
        finally:
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    if done.wait(timeout):
        return True, box.get("value")
    if unblock is not None:
        for _ in range(int(timeout / 0.1)):
            unblock()
            if done.wait(0.1):
                break
    return False, None


_TRAINING_TEXT = [
    "The river bridge was rebuilt in stone after the flood of 1841; its nine arches still "
    "carry the road. ",
    "echo: fault-suite seed. Hello world, the quick brown fox jumps over the lazy dog. ",
    "Ünïcödé text, 中文, emoji, numbers 0123456789 and punctuation !?;:,.",
]


@lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (~500 tokens) trained on three sentences: it encodes any
    text, which is all the KGW detector needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t * 8 for t in _TRAINING_TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")


class TinyTextGenerator:
    """What verification needs of a text generator (``tokenizer``, ``model.config``,
    ``info``), with :func:`tiny_tokenizer`; it cannot generate."""

    modality = Modality.TEXT

    def __init__(self) -> None:
        self.tokenizer = tiny_tokenizer()
        vocab = len(self.tokenizer)
        self.model = SimpleNamespace(config=SimpleNamespace(
            get_text_config=lambda: SimpleNamespace(vocab_size=vocab)))
        self.info = ModelInfo(model_id="faults:tiny-bpe", revision="1", device="cpu")

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("TinyTextGenerator only tokenizes")
