"""PSCT model: geometry, projectors, phantoms, training and export. Serving needs only the .onnx."""

from pathlib import Path

__version__ = "0.1.0"

WEIGHTS = Path(__file__).resolve().parent / "weights"  # the shipped .onnx files and their sidecars
