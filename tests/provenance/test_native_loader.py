"""c2pa-python's native library comes from the installed package, never from the current folder.

c2pa-python's loader looks for ``libc2pa_c.so`` in the current folder, ``./artifacts`` and
``./libs`` before its package folder. These tests plant a library there whose constructor
writes a marker file, then sign and verify in a fresh interpreter run from that folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="plants a Linux shared library")

PLANTED_SOURCE = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("planted library loaded\n", f); fclose(f); }
}
"""

SIGN_AND_VERIFY = textwrap.dedent("""
    import io, sys
    from pathlib import Path
    from PIL import Image
    from guardrail.provenance import (ManifestInfo, ProvenanceSigner, TrustSettings,
                                      init_dev_chain, sign_bytes, verify_bytes)
    keys = Path(sys.argv[1])
    init_dev_chain(keys)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    signed = sign_bytes(buf.getvalue(), "image/png", signer=ProvenanceSigner.from_dev_chain(keys),
                        manifest_info=ManifestInfo(model_id="m"))
    trust = TrustSettings.from_files([keys / "c2pa" / "trust-anchors.pem"])
    print(verify_bytes(signed, "image/png", trust=trust).state.name)
    import c2pa.c2pa
    print(c2pa.c2pa._lib._name)
""")


@pytest.fixture
def planted_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A working folder holding a planted ``libc2pa_c.so`` in every place the loader looks
    first; returns the folder and the marker file the planted library writes when loaded."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        pytest.skip("no C compiler to build the planted library")
    work = tmp_path / "work"
    marker = tmp_path / "planted-marker"
    source = tmp_path / "planted.c"
    source.write_text(PLANTED_SOURCE)
    library = tmp_path / "libc2pa_c.so"
    subprocess.run([compiler, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library),
                    str(source)], check=True, capture_output=True, timeout=60)
    for folder in (work, work / "artifacts", work / "libs"):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(library, folder / "libc2pa_c.so")
    return work, marker


def _run(code: str, cwd: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("library_name", [None, "libc2pa_c.so"])
def test_planted_library_in_current_folder_is_never_loaded(planted_folder, tmp_path,
                                                           monkeypatch, library_name):
    """Also when ``C2PA_LIBRARY_NAME`` names the library without a folder."""
    work, marker = planted_folder
    if library_name:
        monkeypatch.setenv("C2PA_LIBRARY_NAME", library_name)
    else:
        monkeypatch.delenv("C2PA_LIBRARY_NAME", raising=False)
    res = _run(SIGN_AND_VERIFY, work, str(tmp_path / "keys"))
    assert not marker.exists(), "the planted library was loaded"
    assert res.returncode == 0, res.stderr
    state, loaded = res.stdout.split()
    assert state == "TRUSTED"
    import importlib.util

    package = Path(next(iter(importlib.util.find_spec("c2pa").submodule_search_locations)))
    assert Path(loaded).resolve().is_relative_to(package.resolve())


def test_missing_package_library_is_a_dependency_error_not_a_fallback(planted_folder,
                                                                      tmp_path):
    """A c2pa package without its native library: DependencyError, nothing from the folder."""
    import importlib.util

    work, marker = planted_folder
    package = Path(next(iter(importlib.util.find_spec("c2pa").submodule_search_locations)))
    shadow = tmp_path / "shadow"
    shutil.copytree(package, shadow / "c2pa", ignore=shutil.ignore_patterns("libs", "*.so"))
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from guardrail.errors import DependencyError
        from guardrail.provenance._c2pa import c2pa_module
        try:
            c2pa_module()
        except DependencyError as exc:
            print("DependencyError:", exc)
    """)
    res = _run(code, work, str(shadow))
    assert not marker.exists(), "the planted library was loaded"
    assert res.returncode == 0, res.stderr
    assert "DependencyError:" in res.stdout
    assert "native library libc2pa_c.so is missing" in res.stdout
