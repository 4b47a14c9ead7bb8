"""Ptychodus itself opens ptyhpc's product files (skipped unless scripts/setup_peers.sh made .peers/ptychodus)."""
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import ROOT, small_set
from ptyhpc.io.product import write_product

PY = ROOT / ".peers" / "ptychodus" / "bin" / "python"

READ = """
import sys
from pathlib import Path
from ptychodus.plugins.h5_product_file import H5ProductFileIO
p = H5ProductFileIO().read(Path(sys.argv[1]))
print(p.object_.get_array().shape, p.probes.get_array().shape, len(p.probe_positions), len(p.losses),
      p.object_.get_array()[0, 10, 10])
"""


@pytest.mark.skipif(not PY.exists(), reason="no .peers/ptychodus (run scripts/setup_peers.sh)")
def test_ptychodus_reads_our_product_file(tmp_path):
    _, _, scan, obj, probe, _ = small_set()
    out = tmp_path / "p.h5"
    write_product(out, shape=obj.shape, core_box=(0, obj.shape[0], 0, obj.shape[1]), core=obj, probe=probe,
                  scan=scan, n=64, pixel_size=3e-8, wavelength=1.24e-10, distance=2.0, losses=[(1, 2.0), (2, 1.0)])
    r = subprocess.run([str(PY), "-c", READ, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"(1, {obj.shape[0]}, {obj.shape[1]}) (1, 1, 64, 64) {len(scan)} 2")
    assert complex(r.stdout.split()[-1]) == pytest.approx(complex(obj[10, 10]), rel=1e-6)
