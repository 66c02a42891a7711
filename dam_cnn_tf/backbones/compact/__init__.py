"""``compact``: a small network with batch normalisation that trains from scratch on a CPU
(beyond the paper), and a tiny variant for tests."""

from dam_cnn_tf.backbones import Backbone, register

WIDTHS = {"compact": (16, 32, 64), "compact-tiny": (4, 8, 8)}


def _builder(widths):
    def build(input_size: int, weights=None):
        from dam_cnn_tf.backbones import BACKBONE
        from dam_cnn_tf.backbones.compact.model import build_compact_backbone
        from dam_cnn_tf.backbones.vgg_face.model import VGGFacePreprocess

        return (build_compact_backbone((input_size, input_size, 3), widths=widths, name=BACKBONE),
                VGGFacePreprocess(name="preprocess"))

    return build


for _name, _widths in WIDTHS.items():
    register(Backbone(name=_name, family="compact", build=_builder(_widths),
                      description=f"a small network trained from scratch, widths {_widths}"))
