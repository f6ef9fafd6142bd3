"""pcseg: 3D point-cloud semantic segmentation (PointNet, A-CNN), native point ops and a
bridge that fuses 2D image segmentations into RGB-D and LiDAR point clouds.

The robotics API is reachable from the top level: ``pcseg.Segmenter`` (a trained model,
numpy in, numpy out) and ``pcseg.Fuser`` (2D segmentations fused into a voxel map). They are
imported on first use, so ``import pcseg`` stays cheap (no torch, no native extension) for
tools that only need the version or the CLI's help.
"""

__version__ = "0.1.0"

__all__ = ["Segmenter", "Fuser", "__version__"]


def __getattr__(name):
    if name == "Segmenter":
        from pcseg.segmenter import Segmenter

        return Segmenter
    if name == "Fuser":
        from pcseg.fuser import Fuser

        return Fuser
    raise AttributeError(f"module 'pcseg' has no attribute {name!r}")
