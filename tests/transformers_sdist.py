"""transformers' own common model tests (ModelTesterMixin, ConfigTester), taken from the source
distribution of the installed transformers version.

The sdist is fetched once with `pip download` into a cache folder (BRAIN_JEPA_HF_CACHE, default
~/.cache/brain-jepa-hf) and only its top-level `tests/` files are extracted there; nothing of it is
copied into this repository. The sdist lacks a few modules those files import (the `tests/`
package marker and the exporters, generation and utils sub-packages of the transformers repository);
`SUPPLIED_MODULES` below are our stand-ins for them, written next to the extracted files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers


PACKAGE = "transformers_sdist_tests"

# Stand-ins for the modules `tests/test_modeling_common.py` and `tests/test_configuration_common.py`
# import from the transformers repository that its sdist does not ship.
SUPPLIED_MODULES = {
    # `direct_transformers_import(Path(__file__).parent)` executes the tests folder's __init__.py.
    "__init__.py": "",
    "exporters/__init__.py": "",
    # ModelTesterMixin derives from the exporters' mixin. Its torch.export checks are not in the
    # sdist; our own export/compile checks live in tests/test_compile.py.
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/__init__.py": "",
    # Only used to tell generative testers apart; Brain-JEPA models do not generate.
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/__init__.py": "",
    # ConfigTester.check_config_arguments_init sets each of these PreTrainedConfig arguments to a
    # non-default value and checks the config keeps it.
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        "    'return_dict': False,\n"
        "    'output_hidden_states': True,\n"
        "    'output_attentions': True,\n"
        "    'dtype': 'float16',\n"
        "    'chunk_size_feed_forward': 5,\n"
        "    'architectures': ['BrainJepaModel'],\n"
        "    'id2label': {0: 'young', 1: 'old'},\n"
        "    'label2id': {'young': 0, 'old': 1},\n"
        "    'problem_type': 'single_label_classification',\n"
        "}\n"
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("BRAIN_JEPA_HF_CACHE", Path.home() / ".cache" / "brain-jepa-hf"))


def sdist_tests_dir() -> Path:
    """The extracted `tests/` folder of the installed transformers' sdist (downloaded on first use)."""
    version = transformers.__version__
    root = cache_dir() / f"transformers-{version}"
    tests = root / "tests"
    if not (tests / "test_modeling_common.py").is_file():
        archive = cache_dir() / f"transformers-{version}.tar.gz"
        if not archive.is_file():
            archive.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"transformers=={version}",
                    "--dest",
                    str(archive.parent),
                ],
                check=True,
                timeout=600,
            )
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archive) as tar:
            members = [
                m for m in tar.getmembers() if m.name.startswith(prefix) and m.name.count("/") == 2 and m.isfile()
            ]
            tar.extractall(cache_dir(), members=members, filter="data")
    for relative, source in SUPPLIED_MODULES.items():
        path = tests / relative
        if not path.is_file() or path.read_text() != source:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
    return tests


def import_common(module: str):
    """Import `tests/<module>.py` of the sdist as `transformers_sdist_tests.<module>`."""
    if PACKAGE not in sys.modules:
        tests = sdist_tests_dir()
        spec = importlib.util.spec_from_file_location(
            PACKAGE, tests / "__init__.py", submodule_search_locations=[str(tests)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{module}")
