"""Facts about CelebAMask-HQ that every stage shares: mask class names, annotation files, splits.

The 18 region names are the mask file suffixes (``{index:05d}_{name}.png``).
"""

MASK_CLASS_NAMES: tuple[str, ...] = (
    "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# Some notes about the dataset mention a ``_background.png``; the real download has none.
# It is tolerated and ignored: background is whatever no class covers.
IGNORED_MASK_NAMES: frozenset[str] = frozenset({"background"})

ANNOTATION_FILES = (
    "CelebA-HQ-to-CelebA-mapping.txt",
    "CelebAMask-HQ-attribute-anno.txt",
    "CelebAMask-HQ-pose-anno.txt",
)
MAPPING_FILE, ATTRIBUTE_FILE, POSE_FILE = ANNOTATION_FILES

CELEBA_IMAGE_COUNT = 202599
# g_partition.py: train orig_idx < 162771, val < 182638, test the rest.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
SPLIT_STARTS: tuple[int, ...] = (0, 162771, 182638)
POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll")  # the file's header says "Yaw Pitch Raw"

# Arrays the coordinator writes from the annotation files, and the file each comes from.
ARRAYS_BY_FILE: dict[str, tuple[str, ...]] = {
    MAPPING_FILE: ("celeba_index", "celeba_file", "split"),
    ATTRIBUTE_FILE: ("attributes",),
    POSE_FILE: ("pose",),
}
