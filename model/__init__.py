"""PSCT model: geometry, projectors, phantoms, training and export. Serving needs only the .onnx."""

__version__ = "0.1.0"
