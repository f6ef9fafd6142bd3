"""pcseg: 3D point-cloud semantic segmentation (PointNet, A-CNN), native point ops and a
bridge that fuses 2D image segmentations into RGB-D and LiDAR point clouds."""
__version__ = "0.1.0"
