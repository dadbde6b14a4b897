"""The 18 region names CelebAMask-HQ uses as mask file suffixes (``{index:05d}_{name}.png``)."""

MASK_CLASS_NAMES: tuple[str, ...] = (
    "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# Some notes about the dataset mention a ``_background.png``; the real download has none.
# It is tolerated and ignored: background is whatever no class covers.
IGNORED_MASK_NAMES: frozenset[str] = frozenset({"background"})
