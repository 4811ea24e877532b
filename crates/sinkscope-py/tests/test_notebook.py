"""examples/quickstart.ipynb runs end to end, headless (nbclient), on SmolLM2."""

import os

import pytest

from conftest import ROOT, require_smollm2


def test_quickstart_notebook_runs(tmp_path):
    require_smollm2()
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    os.environ["SINKSCOPE_ROOT"] = str(ROOT)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the Fig. 1 panels were not drawn"
    assert any("text/html" in o.get("data", {}) for o in outputs), "Run._repr_html_ did not show"
