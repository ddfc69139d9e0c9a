import numpy as np
import pytest

from guardrail.detectors.hf import HFClassifierDetector
from guardrail.detectors.registry import build
from guardrail.detectors.text import BinocularsScorer, FastDetectGPTScorer
from guardrail.errors import ModelLoadError

from .conftest import art

LABELS = {"id2label": {0: "real", 1: "fake"}, "label2id": {"real": 0, "fake": 1}}


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit")
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64, **LABELS)
    ViTForImageClassification(cfg).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def test_hf_image_detector(tiny_vit, photos):
    det = build(f"hf-image:{tiny_vit}", None)
    r = det.detect(art("image", photos[0]))
    assert r.reason is None and 0 <= r.probability <= 1 and "fake" in r.explanation
    assert det.detect(art("image", np.zeros((8, 8, 3), np.uint8))).probability is None


def test_hf_missing_model_fails_fast(tmp_path):
    with pytest.raises(ModelLoadError, match="nothing is downloaded"):
        HFClassifierDetector(str(tmp_path / "absent"), "image")
    with pytest.raises(ModelLoadError):
        HFClassifierDetector("no-such-org/no-such-detector", "text")


def test_hf_text_detector(tmp_path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "the", "a", "cat", "sat"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                            model_max_length=64).save_pretrained(tmp_path)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                     **LABELS)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    det = build(f"hf-text:{tmp_path}", None)
    r = det.detect(art("text", "the cat sat on a mat " * 5))
    assert r.reason is None and 0 <= r.probability <= 1
    assert "shorter" in det.detect(art("text", "the cat")).reason


def test_hf_audio_detector(tmp_path):
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 4),
                         conv_kernel=(10, 8), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                         id2label={0: "bonafide", 1: "spoof"}, label2id={"bonafide": 0, "spoof": 1})
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    det = build(f"hf-audio:{tmp_path}", None)
    x = (0.2 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 300)).astype(np.float32)
    r = det.detect(art("audio", x, sample_rate=8000))  # resampled to 16 kHz
    assert r.reason is None and 0 <= r.probability <= 1
    assert "silent" in det.detect(art("audio", np.zeros(16000, np.float32), 16000)).reason


@pytest.fixture(scope="module")
def texts(text_generator):
    from guardrail.corpora import human_texts

    human = [t for _, t in human_texts(limit=4, max_words=60)]
    gen = [g.content for g in text_generator.generate(
        ["Write a short paragraph about the sea.", "Explain how bread is made.",
         "Describe a walk in the forest.", "Write about learning to code."],
        seed=3, params={"max_new_tokens": 60, "min_new_tokens": 60})]
    return human, gen


def test_fast_detectgpt_criterion_and_calibrated_detector(config, text_generator, texts):
    human, gen = texts
    sc = FastDetectGPTScorer.from_generator(text_generator)
    crit_h = [sc.criterion(t) for t in human]
    crit_g = [sc.criterion(t) for t in gen]
    assert np.isfinite(crit_h + crit_g).all()
    assert np.mean(crit_g) > np.mean(crit_h)  # the model's own text is more "typical"
    # the shipped calibration for the embedded model: works with no training step
    det = build("fast-detectgpt", config, text_generator=text_generator)
    assert det.meta["shipped"] and det.meta["scoring_model"] == sc.model_version
    r = det.detect(art("text", gen[0]))
    assert r.probability is not None and r.operating_fpr is not None
    assert det.detect(art("text", gen[0])).probability > det.detect(art("text", human[0])).probability
    short = det.detect(art("text", "Too short."))
    assert short.probability is None and "minimum" in short.reason


def test_fast_detectgpt_without_its_calibration_is_not_performed(tmp_path, text_generator):
    from guardrail.config import Config
    from guardrail.detectors.registry import build_all

    config = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                    "detectors": {"text_calibration": "not-trained-here"}})
    dets = build_all(config, ["text"], text_generator=text_generator)
    r = dets[0].detect(art("text", "word " * 50))
    assert r.probability is None and "no trained detector" in r.reason


def test_binoculars_criterion(text_generator, texts):
    sc = BinocularsScorer(text_generator.model, text_generator.model, text_generator.tokenizer)
    assert np.isfinite(sc.criterion(texts[1][0]))
