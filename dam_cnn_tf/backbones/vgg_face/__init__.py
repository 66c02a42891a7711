"""VGG-Face (paper §3.1, Table 1), the paper's backbone, and two narrower variants for tests and
small machines. Its weights are converted VGG-Face releases (``damcnn-tf weights``)."""

from dam_cnn_tf.backbones import Backbone, register
from dam_cnn_tf.backbones.vgg_face.weights import check_vgg_face_weights, load_vgg_face_weights

WIDTHS = {
    "vgg-face": (64, 128, 256, 512, 512),
    "vgg-face-small": (16, 32, 64, 64, 64),
    "vgg-face-tiny": (4, 8, 8, 16, 16),
}


def _builder(widths):
    def build(input_size: int, weights=None):
        from dam_cnn_tf.backbones import BACKBONE
        from dam_cnn_tf.backbones.vgg_face.model import VGGFacePreprocess, build_vgg_face

        shape = (input_size, input_size, 3)
        return (build_vgg_face(input_shape=shape, include_top=False, widths=widths, name=BACKBONE),
                VGGFacePreprocess(name="preprocess"))

    return build


for _name, _widths in WIDTHS.items():
    register(Backbone(
        name=_name, family="vgg-face", build=_builder(_widths),
        description="the paper's VGG-Face" if _name == "vgg-face" else f"VGG-Face's layout, widths {_widths}",
        weights_description="converted VGG-Face weights (damcnn-tf weights convert)",
        load_weights=load_vgg_face_weights, check_weights=check_vgg_face_weights,
        cut_points=("conv5_1", "conv4_1", "conv3_1"), download="vgg-face" if _name == "vgg-face" else None))
