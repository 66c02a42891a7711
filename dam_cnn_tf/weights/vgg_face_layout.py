"""VGG-Face's layout and input convention (Table 1), importable without TensorFlow."""

# Mean pixel of the VGG-Face training set, in the release's B, G, R order.
VGG_FACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)
# Output channels of the five convolutional blocks, and how many 3x3 convolutions each has.
VGG_FACE_WIDTHS = (64, 128, 256, 512, 512)
VGG_FACE_DEPTHS = (2, 2, 3, 3, 3)
# The original classifier: 2622 identities.
VGG_FACE_CLASSES = 2622
CONV_LAYER_NAMES = tuple(
    f"conv{block}_{i}" for block, depth in enumerate(VGG_FACE_DEPTHS, 1) for i in range(1, depth + 1)
)
