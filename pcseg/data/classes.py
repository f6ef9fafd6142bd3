"""Class lists of the data sets pcseg reads, in each data set's own label order."""

# fmt: off
# (the tables keep several names per row: one per line would make them five times as long)

# S3DIS, 13 classes in the order of PointNet's `sem_seg/meta/class_names.txt`; label i is
# S3DIS_CLASS_NAMES[i]. The procedural scenes of `pcseg.data.synthetic` use the same order.
S3DIS_CLASS_NAMES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)

# PointNet's `indoor3d_util.g_class2color`, for visualisation (uint8 RGB per class).
S3DIS_CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255),
    (100, 100, 255), (200, 200, 100), (170, 120, 200), (255, 0, 0), (200, 100, 100),
    (10, 200, 100), (200, 200, 200), (50, 50, 50),
)

# SUN RGB-D 37-class 2D segmentation benchmark (SUNRGBDtoolbox `seg37list`); label 0 is
# "unlabelled" and label i >= 1 is SUNRGBD_37_CLASS_NAMES[i - 1].
SUNRGBD_37_CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor_mat", "clothes", "ceiling", "books", "fridge", "tv",
    "paper", "towel", "shower_curtain", "box", "whiteboard", "person", "night_stand",
    "toilet", "sink", "lamp", "bathtub", "bag",
)

# NYU Depth v2 13-class set (Couprie et al. 2013, as in ankurhanda/nyuv2-meta-data);
# label 0 is "unlabelled" and label i >= 1 is NYU_13_CLASS_NAMES[i - 1].
NYU_13_CLASS_NAMES: tuple[str, ...] = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture",
    "sofa", "table", "tv", "wall", "window",
)

# NYU Depth v2 40-class set (Gupta et al. 2013); label 0 is "unlabelled", label i >= 1 is
# NYU_40_CLASS_NAMES[i - 1]. The first 37 coincide with SUN RGB-D's 37 classes.
NYU_40_CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
# fmt: on
