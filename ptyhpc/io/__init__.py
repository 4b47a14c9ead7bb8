"""Reading measured data and writing results.

``load(path)`` returns a :class:`Dataset` whatever the format (CXI, tike npz, Ptychodus input folder); its
patterns are read lazily, so each rank reads only its own (``Dataset.read_patterns``). Every problem with an
input raises :class:`InputError`, whose message names the file, the dataset and what is wrong.
"""
from __future__ import annotations

from .dataset import Dataset, InputError, load

__all__ = ["Dataset", "InputError", "load"]
