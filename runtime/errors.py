"""The one error hierarchy of flower-edge.

Every message says what was expected and what was found, so that a command line tool can print it
as a single line and exit with code 1.
"""


class FlowerEdgeError(Exception):
    """Base of every error flower-edge raises on purpose."""


class CardError(FlowerEdgeError):
    """A model card is missing, malformed, or newer than this version understands."""


class ImageError(FlowerEdgeError):
    """An image file could not be read or decoded."""


class DataError(FlowerEdgeError):
    """A data source is missing, empty, or not in a layout flower-edge knows."""


class CheckpointError(FlowerEdgeError):
    """A checkpoint is missing, truncated, or was not written by flower-edge."""


class ConfigError(FlowerEdgeError):
    """An option has a value flower-edge does not support."""


class ExportError(FlowerEdgeError):
    """An export failed its checks (parity, calibration data, output folder)."""
