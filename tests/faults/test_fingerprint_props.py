"""The content fingerprint (record recovery) of any artifact: a string of its kind, and
bounded work whatever the sample rate, size or shape says."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from guardrail import GuardrailError
from guardrail._types import Artifact, GenerationMetadata, Modality
from guardrail.fingerprint import fingerprint, match
from tests.faults.strategies import FAULTS, memory_headroom

META = GenerationMetadata(model_id="faults")
RATES = st.one_of(st.sampled_from((1, 2, 7999, 8000, 44100, 1_000_000, 7_000_000, 2**31 - 1)),
                  st.integers(1, 2**31 - 1))


def fp_or_typed_error(art: Artifact, prefix: str) -> None:
    with memory_headroom():
        try:
            fp = fingerprint(art)
        except GuardrailError:
            return
    assert isinstance(fp, str) and fp.startswith(prefix)
    ok, _ = match(fp, fp)
    assert ok in (True, False)


@FAULTS
@given(h=st.integers(1, 400), w=st.integers(1, 400), c=st.sampled_from((1, 3, 4)))
def test_image_fingerprint(h, w, c):
    arr = np.random.default_rng(h * w).integers(0, 256, (h, w, c), dtype=np.uint8)
    fp_or_typed_error(Artifact(Modality.IMAGE, arr[:, :, 0] if c == 1 else arr, META), "phash:")


@FAULTS
@given(n=st.integers(1, 32000), channels=st.sampled_from((1, 2, 7)), rate=RATES)
def test_audio_fingerprint_at_any_rate(n, channels, rate):
    x = (0.1 * np.random.default_rng(n).standard_normal((n, channels))).astype(np.float32)
    fp_or_typed_error(Artifact(Modality.AUDIO, x[:, 0] if channels == 1 else x, META,
                               sample_rate=rate), "env:")


@FAULTS
@given(text=st.text(max_size=2000))
def test_text_fingerprint(text):
    fp_or_typed_error(Artifact(Modality.TEXT, text, META), "text-sha256:")


GEOMETRY = st.fixed_dictionaries({
    "scale": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4)),
    "angle_deg": st.floats(allow_nan=True, allow_infinity=True),
    "flipped": st.booleans(),
    "offset": st.lists(st.floats(-1e6, 1e6), max_size=3),
    "shift": st.lists(st.integers(-2**40, 2**40), max_size=3)})


@FAULTS
@given(h=st.integers(1, 300), w=st.integers(1, 300), recorded=st.text(max_size=200),
       geometry=st.one_of(st.none(), GEOMETRY), rows=st.integers(-2, 80),
       cols=st.integers(-2, 80), seed=st.integers(0, 2**16))
def test_region_binding_of_any_image_record_and_geometry(h, w, recorded, geometry, rows, cols,
                                                         seed):
    """A region fingerprint is a well-formed grid or a typed error; comparing any recorded
    string, well-formed or not, under any geometry is a match or no match, never an error."""
    import base64

    from guardrail.fingerprint_region import region_fingerprint, region_match

    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    art = Artifact(Modality.IMAGE, arr, META)
    try:
        own = region_fingerprint(art)
    except GuardrailError:
        own = None
    if own is not None:
        assert own.startswith("grid:1:") and len(own) < 6000
    grid = np.random.default_rng(seed + 1).integers(0, 256, max(rows * cols, 0), dtype=np.uint8)
    made = f"grid:1:{rows}:{cols}:{base64.b64encode(grid.tobytes()).decode()}"
    for rec in (recorded, made, own or ""):
        m = region_match(rec, art, geometry)
        assert m.matches in (True, False) and isinstance(m.reason, str)
