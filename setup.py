"""Build hook: compile the simulator's hot modules with mypyc when possible.

Everything else about the package is declared in ``pyproject.toml``. The modules in
``sim/_core.py:COMPILED`` (the iteration loop, the schedulers, the decode set, the cost lines,
the recorder, the clients) are ordinary Python; mypyc compiles the same files to C extensions, which run
the simulator about twice as fast with bit-identical results. When the compile cannot happen
(no C compiler, mypy missing, a type error, ``SERVESIM_PURE_PYTHON=1`` at build time) the
build says why and installs the pure-Python package, which works the same, only slower.

After a successful compile the build writes ``sim/_compiled.json`` (the sha256 of each source
the extensions were built from). At import, ``sim._core`` uses the extensions only if every
source still matches, so an edited module is never shadowed by a stale extension.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import traceback
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CORE = runpy.run_path(str(ROOT / "sim" / "_core.py"))  # (the same rules the import applies)
COMPILED: tuple[str, ...] = CORE["COMPILED"]
MANIFEST: str = CORE["MANIFEST"]
PURE_ENV: str = CORE["PURE_ENV"]
_source = CORE["_source"]  # "sim.servers.base" -> ROOT/sim/servers/base.py


def _say(message: str) -> None:
    print(f"servesim build: {message}", file=sys.stderr, flush=True)


def _fallback() -> None:
    _say("could not compile the fast core with mypyc; installing pure Python "
         "(same results, about half the speed). The error was:")
    traceback.print_exc(limit=3)


class BuildCore(build_ext):
    """Compile the hot modules with mypyc; on any failure, fall back to pure Python."""

    def finalize_options(self) -> None:
        # mypyc type-checks the modules and writes their C source here, so that setuptools
        # finalizes its extensions like any others
        self.distribution.ext_modules = self._mypyc_extensions()
        super().finalize_options()

    def _mypyc_extensions(self) -> list[Extension]:
        if CORE["pure_requested"]():
            _say(f"{PURE_ENV} is set: installing the pure-Python core")
            return []
        try:
            from mypyc.build import mypycify

            # numpy, simpy and pydantic are not in the isolated build environment: mypy types
            # them as Any (they are Python objects to the compiled code anyway), and modules
            # reached only through imports are read for their types, their own errors ignored.
            return mypycify(
                ["--ignore-missing-imports", "--follow-imports=silent",
                 *(str(_source(m).relative_to(ROOT)) for m in COMPILED)],
                opt_level="3",
            )
        except (Exception, SystemExit):  # noqa: BLE001 - mypyc exits on a type error
            _fallback()
            return []

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except (Exception, SystemExit):  # noqa: BLE001 - no C compiler, a compile error...
            _fallback()
            self._remove_outputs()
            return
        self._write_manifest()
        _say(f"compiled {len(COMPILED)} modules with mypyc")

    def _package_dir(self) -> Path:
        """Where this build puts ``sim/`` files (the source tree for in-place/editable builds)."""
        return Path(self.get_ext_fullpath("sim._probe")).parent

    def _write_manifest(self) -> None:
        digests = {m: hashlib.sha256(_source(m).read_bytes()).hexdigest() for m in COMPILED}
        path = self._package_dir() / Path(MANIFEST).name
        path.write_text(json.dumps({"sources": digests}, indent=1, sort_keys=True) + "\n")

    def _remove_outputs(self) -> None:
        for ext in self.extensions:
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        (self._package_dir() / Path(MANIFEST).name).unlink(missing_ok=True)

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        manifest = self._package_dir() / Path(MANIFEST).name
        if manifest.exists():
            outputs.append(str(manifest))
        return outputs


# A placeholder, so that setuptools runs build_ext (and builds a platform wheel); BuildCore
# replaces it with mypyc's extensions, or with nothing.
setup(
    ext_modules=[Extension("sim._placeholder", sources=[])],
    cmdclass={"build_ext": BuildCore},
)
