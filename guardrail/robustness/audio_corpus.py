"""Audio made on this machine for the audio robustness lab (nothing is downloaded).

* ``piper``: the embedded Piper voice (``load_generator("audio")``), random combinations of
  sentences, seeds, speaking rates and noise scales (:func:`piper_clips`).
* ``espeak`` / ``flite``: other (formant and diphone) speech synthesisers, used when the
  Debian packages ``espeak-ng`` / ``flite`` are installed; ``midi``: random multi-instrument
  MIDI pieces rendered by ``timidity`` with its sound fonts, when installed
  (:func:`tool_clips`).
* ``synth``: numpy-made music-like signals (harmonic notes with envelopes and vibrato,
  chords, percussive noise bursts) and noise: always available (:func:`synth_clips`).

A clip is ``(samples, sample_rate)``: mono ``float32`` samples.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["HUMAN_SPEECH_DIR", "SPLITS", "Clip", "human_clips", "piper_clips", "synth_clips",
           "tool_clips"]

Clip = tuple[np.ndarray, int]

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to bring your umbrella because it may rain this afternoon.",
    "Scientists have discovered a new species of frog in the rainforest of Peru.",
    "Our quarterly results show a steady increase in revenue across all regions.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Turn left at the next intersection and continue for two hundred meters.",
    "The museum will be closed on Monday for maintenance and cleaning.",
    "Can you tell me how to get to the nearest train station from here?",
    "Artificial intelligence is changing the way we work, learn and communicate.",
    "My grandmother used to bake the most wonderful apple pies every Sunday.",
    "The orchestra performed a stunning rendition of the symphony last night.",
    "Please hold the line, your call is important to us and will be answered shortly.",
    "Mountains covered in snow rose above the quiet valley at dawn.",
    "He opened the old wooden box and found a bundle of letters tied with ribbon.",
    "Breaking news: the city council has approved the new budget for public transport.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "I would like a cup of coffee with milk and no sugar, please.",
    "The children laughed as the puppy chased its own tail around the garden.",
    "Remember that practice makes perfect, so keep trying every single day.",
    "Is it true that the library stays open until midnight during exams?",
    "Seven hundred and forty two people attended the conference in Lisbon.",
    "Wow! That was the loudest thunderstorm I have ever heard.",
    "To be, or not to be, that is the question.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
)


#: The sentences of each split of the Piper clips: ``tune`` (the even-numbered sentences,
#: for choosing parameters) and ``heldout`` (the odd-numbered ones, for measuring).
SPLITS = {"tune": SENTENCES[0::2], "heldout": SENTENCES[1::2], "all": SENTENCES}


def _texts(n: int, rng: np.random.Generator, sentences: tuple[str, ...] = SENTENCES
           ) -> list[str]:
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 4))
        idx = rng.choice(len(sentences), size=k, replace=False)
        out.append(" ".join(sentences[j] for j in idx))
    return out


def piper_clips(n: int, *, seed: int = 0, split: str = "heldout") -> list[Clip]:
    """``n`` utterances of the embedded Piper voice (found through the generator registry).

    ``split`` chooses the sentences (:data:`SPLITS`): ``heldout`` (the default, what the
    robustness lab measures on), ``tune`` (disjoint from it: for choosing parameters) or
    ``all``.
    """
    from .._generator import load_generator

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    gen = load_generator("audio", progress=False)
    rng = np.random.default_rng(seed)
    clips = []
    for i, text in enumerate(_texts(n, rng, SPLITS[split])):
        params = {"length_scale": float(rng.uniform(0.8, 1.25)),
                  "noise_scale": float(rng.uniform(0.4, 0.9))}
        out = gen.generate([text], seed=seed * 100003 + i, params=params)[0]
        clips.append((np.asarray(out.content, dtype=np.float32), int(out.sample_rate)))
    return clips


#: Where Debian's ``asterisk-core-sounds-en-wav`` installs its voice-actor prompts (8 kHz
#: recorded human speech; the only recorded speech that ships offline).
HUMAN_SPEECH_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")


def human_clips(n: int, directory: str | Path | None = None, *, seed: int = 0,
                min_seconds: float = 2.0, max_seconds: float = 10.0) -> list[Clip]:
    """Up to ``n`` recordings of human speech from ``directory`` (default
    :data:`HUMAN_SPEECH_DIR`; none when it is not installed): ``.wav`` / ``.flac`` /
    ``.ogg`` files of at least ``min_seconds``, mono, cut to their first ``max_seconds``,
    a random choice (``seed``) in file-name order. Unreadable files are skipped."""
    root = Path(directory) if directory is not None else HUMAN_SPEECH_DIR
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
    order = np.random.default_rng(seed).permutation(len(files))
    out: list[Clip] = []
    for i in order:
        if len(out) >= n:
            break
        try:
            x, sr = _read(files[i])
        except (OSError, RuntimeError):
            continue
        if x.shape[0] >= min_seconds * sr:
            out.append((x[: int(max_seconds * sr)].astype(np.float32), sr))
    return out


def _read(path: Path) -> Clip:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(sr)


def _midi_file(path: Path, rng: np.random.Generator, seconds: float) -> None:
    """Write a random multi-track MIDI piece (format 0)."""
    events: list[tuple[int, bytes]] = []  # (tick, message)
    tpq, tempo_us = 480, int(rng.integers(400_000, 800_000))
    ticks_per_s = tpq * 1e6 / tempo_us
    for ch in range(int(rng.integers(2, 5))):
        program = int(rng.integers(0, 96))
        events.append((0, bytes([0xC0 | ch, program])))
        base = int(rng.integers(40, 72))
        scale = np.array([0, 2, 4, 5, 7, 9, 11])
        t = 0.0
        while t < seconds:
            dur = float(rng.choice([0.125, 0.25, 0.5, 1.0])) * tempo_us / 1e6 * 2
            notes = [base + int(scale[rng.integers(0, 7)]) + 12 * int(rng.integers(-1, 2))
                     for _ in range(int(rng.integers(1, 4)))]
            vel = int(rng.integers(50, 120))
            for note in notes:
                events.append((int(t * ticks_per_s), bytes([0x90 | ch, note, vel])))
                events.append((int((t + dur * 0.9) * ticks_per_s), bytes([0x80 | ch, note, 0])))
            t += dur
    events.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))
    track = bytearray(b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big"))
    last = 0
    for tick, msg in events:
        delta = tick - last
        last = tick
        var = [delta & 0x7F]
        delta >>= 7
        while delta:
            var.append(0x80 | (delta & 0x7F))
            delta >>= 7
        track += bytes(reversed(var)) + msg
    track += b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big")
                     + (1).to_bytes(2, "big") + tpq.to_bytes(2, "big")
                     + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))


def tool_clips(n: int, *, seed: int = 0) -> dict[str, list[Clip]]:
    """Clips from the Debian tools that are installed: ``espeak``, ``flite``, ``midi``."""
    rng = np.random.default_rng(seed + 7)
    out: dict[str, list[Clip]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        espeak = shutil.which("espeak-ng")
        if espeak:
            voices = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-us+m5", "en-us+f2"]
            clips = []
            for i, text in enumerate(_texts(n, rng)):
                cmd = [espeak, "-v", voices[i % len(voices)], "-s",
                       str(int(rng.integers(130, 190))), "-p", str(int(rng.integers(20, 80))),
                       "-w", str(wav), text]
                if subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0:
                    clips.append(_read(wav))
            out["espeak"] = clips
        flite = shutil.which("flite")
        if flite:
            voices = ["slt", "awb", "rms", "kal16"]
            clips = []
            for i, text in enumerate(_texts(n, rng)):
                cmd = [flite, "-voice", voices[i % len(voices)], "-t", text, "-o", str(wav)]
                if subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0:
                    clips.append(_read(wav))
            out["flite"] = clips
        timidity = shutil.which("timidity")
        if timidity:
            clips = []
            mid = Path(tmp) / "piece.mid"
            for _ in range(n):
                _midi_file(mid, rng, 12.0)
                cmd = [timidity, "-Ow", "-o", str(wav), "-s", "22050", "--output-mono",
                       str(mid)]
                if subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0:
                    x, sr = _read(wav)
                    if np.abs(x).max() > 0:
                        clips.append((x / max(1.0, float(np.abs(x).max())), sr))
            out["midi"] = clips
    return out


def synth_clips(n: int, *, seed: int = 0, sr: int = 22050, seconds: float = 8.0) -> list[Clip]:
    """Music-like and noise signals made with numpy (no external data)."""
    rng = np.random.default_rng(seed + 11)
    clips = []
    t_all = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        kind = i % 4
        x = np.zeros_like(t_all)
        if kind in (0, 1):  # notes / chords with harmonics, envelopes, vibrato
            t0 = 0.0
            while t0 < seconds:
                dur = float(rng.uniform(0.15, 0.8))
                m = (t_all >= t0) & (t_all < t0 + dur * 1.5)
                tt = t_all[m] - t0
                env = np.minimum(tt / 0.01, 1.0) * np.exp(-tt * rng.uniform(1.0, 6.0))
                for _ in range(1 if kind == 0 else 3):
                    f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
                    vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * tt)
                    for h in range(1, 12):
                        if f0 * h > sr / 2.2:
                            break
                        x[m] += env * rng.uniform(0.2, 1.0) / h * np.sin(
                            2 * np.pi * f0 * h * tt * vib + rng.uniform(0, 6.3))
                t0 += dur
            if kind == 1:  # percussion
                for tb in np.arange(0, seconds, 60 / rng.uniform(80, 140)):
                    m = (t_all >= tb) & (t_all < tb + 0.2)
                    tt = t_all[m] - tb
                    x[m] += rng.standard_normal(tt.shape) * np.exp(-tt * 30) * 0.5
        elif kind == 2:  # coloured noise with a slow envelope
            spec = np.fft.rfft(rng.standard_normal(t_all.shape))
            f = np.fft.rfftfreq(t_all.shape[0], 1 / sr)
            spec /= np.maximum(f, 20.0) ** rng.uniform(0.0, 1.0)
            x = np.fft.irfft(spec, t_all.shape[0])
            x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t_all)
        else:  # tone sweep + harmonic pad
            f0 = rng.uniform(100, 400)
            f1 = rng.uniform(400, 3000)
            phase = 2 * np.pi * np.cumsum(f0 + (f1 - f0) * t_all / seconds) / sr
            x = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * rng.standard_normal(t_all.shape)
        peak = float(np.abs(x).max()) or 1.0
        clips.append(((x / peak * rng.uniform(0.3, 0.95)).astype(np.float32), sr))
    return clips
