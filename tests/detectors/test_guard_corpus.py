"""The guard corpus (what the guard releases vs human text) and held-out calibration,
with a fake word-level generator: no model is loaded."""

import json

import numpy as np
import pytest

from guardrail import Generated
from guardrail.detectors.corpus import GUARD_PARTS, guard_corpus, guard_prompts
from guardrail.errors import InputError


class _Tok:
    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []

    def __call__(self, text, add_special_tokens=False):
        ids = []
        for w in text.split():
            if w not in self.vocab:
                self.vocab[w] = len(self.words)
                self.words.append(w)
            ids.append(self.vocab[w])
        return {"input_ids": ids}

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(self.words[i] for i in ids)


class _Gen:
    def __init__(self):
        self.tokenizer = _Tok()
        self.defaults = {"max_new_tokens": 96, "temperature": 0.7}
        self.calls = []

    def generate(self, prompts, *, seed=None, params=None, hooks=None):
        self.calls.append({"prompts": list(prompts), "params": dict(params or {}),
                           "watermark": getattr(hooks, "watermarking_config", None)})
        return [Generated(content=f"answer {seed} {i} to {p[:20]}")
                for i, p in enumerate(prompts)]


def test_guard_corpus_parts_lengths_and_disjoint_splits(tmp_path):
    gen = _Gen()
    cal = guard_corpus(gen, tmp_path / "cal", samples=8, human_samples=12, min_tokens=40,
                       max_tokens=60, skip=0, seed=3, progress=False)
    ev = guard_corpus(gen, tmp_path / "eval", samples=8, human_samples=10, min_tokens=40,
                      max_tokens=60, skip=12, seed=3, progress=False)
    real_cal = sorted((tmp_path / "cal" / "real").glob("*.txt"))
    synth = sorted(p.name for p in (tmp_path / "cal" / "synthetic").glob("*.txt"))
    assert len(real_cal) == 12 and len(synth) == 8
    assert {n.rsplit("-", 1)[0] for n in synth} == set(GUARD_PARTS)
    lengths = [len(p.read_text().split()) for p in real_cal]
    assert all(40 <= n <= 60 for n in lengths) and len(set(lengths)) > 1
    # chat parts use the chat template, continuations do not; "-kgw" parts carry KGW
    for call, part in zip(gen.calls[:4], GUARD_PARTS, strict=True):
        assert call["params"]["use_chat_template"] is part.startswith("chat")
        assert (call["watermark"] is not None) is part.endswith("-kgw")
    # no human passage and no prompt shared between the two corpora
    texts = {p.read_text() for p in real_cal}
    assert not texts & {p.read_text() for p in (tmp_path / "eval" / "real").glob("*.txt")}
    assert cal["prompts"][1] <= ev["prompts"][0]
    desc = json.loads((tmp_path / "cal" / "corpus.json").read_text())
    assert desc["human_samples"] == 12 and desc["kind"] == "guard"


def test_guard_corpus_refuses_bad_sizes(tmp_path):
    with pytest.raises(InputError, match="multiple of 4"):
        guard_corpus(_Gen(), tmp_path / "x", samples=6, progress=False)
    assert len(guard_prompts()) == len(set(guard_prompts())) == 480


class _Scorer:
    model_version = "fake/model@1"
    min_tokens, max_tokens = 1, 256
    model = None

    def check(self, artifact):
        pass

    def criterion(self, text):
        return float(text.count("z"))

    def load(self):
        pass


def test_heldout_training_states_the_heldout_false_positive_rate(tmp_path):
    from guardrail.detectors.train import train

    rng = np.random.default_rng(0)

    def folder(name, zs):
        (tmp_path / name).mkdir()
        for i, z in enumerate(zs):
            (tmp_path / name / f"{'chat-' if 'syn' in name else ''}{i:05d}.txt").write_text(
                "word " * 5 + "z" * int(z))

    folder("real", rng.poisson(2, 200))
    folder("syn", rng.poisson(9, 60))
    folder("real2", rng.poisson(2, 300))
    folder("syn2", rng.poisson(9, 40))
    res = train("fast-detectgpt", tmp_path / "real", tmp_path / "syn", "held",
                data_dir=tmp_path / "data", test_size=0, target_fpr=0.05,
                text_scorer=_Scorer(), heldout=(tmp_path / "real2", tmp_path / "syn2"),
                n_bootstrap=50)
    held = res["heldout"]
    assert held["n_real"] == 300 and held["n_synthetic"] == 40
    assert res["operating_fpr"] == held["fpr"] == held["false_positives"] / 300
    lo, hi = held["fpr_ci"]
    assert lo <= held["fpr"] <= hi and held["fpr_wilson"][0] <= held["fpr"]
    saved = json.loads((tmp_path / "data" / "detectors" / "held.json").read_text())
    assert saved["operating_fpr"] == held["fpr"]
    assert "300 held-out real examples" in saved["operating_point_from"]
    assert saved["heldout"]["fpr_ci"] == [lo, hi]


def test_fitting_on_everything_needs_a_heldout_set(tmp_path):
    from guardrail.detectors.train import train

    with pytest.raises(InputError, match="--heldout"):
        train("fast-detectgpt", tmp_path, tmp_path, "x", data_dir=tmp_path, test_size=0,
              text_scorer=_Scorer())
