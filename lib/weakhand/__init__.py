"""weakhand: weakly-supervised 3D hand pose estimation from monocular RGB (research workbook library)."""

__version__ = "0.1.0"
