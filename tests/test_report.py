import csv
import json
import statistics

import pytest
from conftest import ROOT, run_script


def test_report_summarises_a_sweep(tiny_sweep):
    proc = run_script("report.py", str(tiny_sweep))
    assert "| crossvit_micro_28 | cross_attention | 2 |" in proc.stdout
    listed = list(csv.DictReader((tiny_sweep / "fusion_comparison.csv").open()))
    assert [r["fusion"] for r in listed] == ["none", "cross_attention"]  # the registry's order, not the sweep's
    rows = {r["fusion"]: r for r in listed}
    for fusion, jobs in (("cross_attention", ["0", "1"]), ("none", ["2", "3"])):
        accs = [json.loads((tiny_sweep / j / "metrics.json").read_text())["test/acc"] for j in jobs]
        assert float(rows[fusion]["test_acc_mean"]) == pytest.approx(statistics.mean(accs))
        assert float(rows[fusion]["test_acc_std"]) == pytest.approx(statistics.stdev(accs))
    assert float(rows["cross_attention"]["params_m"]) > float(rows["none"]["params_m"])
    assert float(rows["cross_attention"]["gflops"]) > float(rows["none"]["gflops"])
    assert "branch0_mean" in rows["none"] and "fit_time_s" in rows["none"]
    assert (tiny_sweep / "fusion_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "± " in (tiny_sweep / "fusion_comparison.md").read_text()


def test_report_names_a_directory_without_runs(tmp_path):
    proc = run_script("report.py", str(tmp_path), check=False)
    assert proc.returncode != 0 and "holds no <job>/metrics.json" in proc.stderr


def test_notebook_runs_against_a_sweep(tiny_sweep, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SWEEP_DIR", str(tiny_sweep))
    nb = nbformat.read(ROOT / "notebooks" / "fusion_ablation.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the FLOPs plot and the attention maps
