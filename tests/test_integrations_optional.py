"""The integrations are optional: `import resbench` loads neither framework, and a missing one is one line
naming the pip extra that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = {"lightning": "lightning", "transformers": "transformers"}  # integration module -> package


def test_import_resbench_loads_no_framework():
    code = ("import sys, resbench, resbench.watching, resbench.integrations; "
            "print(sorted(m for m in ('lightning', 'transformers', 'pytorch_lightning') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize("integration", sorted(FRAMEWORKS))
def test_a_missing_framework_is_one_line_naming_the_extra(integration):
    package = FRAMEWORKS[integration]
    # A meta-path finder that refuses the framework, as if it were not installed.
    code = f"""
import sys, importlib.abc
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {package!r} or name.startswith({package!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Absent())
import resbench.integrations.{integration}
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"ImportError: resbench.integrations.{integration} needs {package}: "
                    f"pip install 'resbench[{integration}]'")
