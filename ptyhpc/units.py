"""Physical constants (exact in the SI since 2019) and the conversions ptyhpc needs, in one place."""
from __future__ import annotations

PLANCK = 6.62607015e-34
"""Planck constant h, J s (exact)."""
LIGHT_SPEED = 299792458.0
"""Speed of light c, m / s (exact)."""
ELECTRON_VOLT = 1.602176634e-19
"""One electronvolt, J (exact)."""
HC = PLANCK * LIGHT_SPEED
"""h c, J m: wavelength = HC / photon energy (the same product Ptychodus computes)."""


def wavelength_from_joules(energy_j: float) -> float:
    """Photon wavelength (m) of a photon energy in joules."""
    return HC / energy_j


def wavelength_from_ev(energy_ev: float) -> float:
    """Photon wavelength (m) of a photon energy in electronvolts."""
    return HC / (energy_ev * ELECTRON_VOLT)


def ev_from_wavelength(wavelength_m: float) -> float:
    """Photon energy (eV) of a wavelength in metres."""
    return HC / wavelength_m / ELECTRON_VOLT
