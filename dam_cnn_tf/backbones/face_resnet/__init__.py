"""``face-resnet``: dlib's face-recognition ResNet as face-api publishes it (public domain
network, MIT files), the face-pretrained backbone anyone can get (``damcnn-tf weights download
face-resnet``). SERD sits on its 4x4x256 map at 150x150."""

from dam_cnn_tf.backbones import Backbone, register
from dam_cnn_tf.backbones.face_resnet.weights import read_face_resnet_weights


def _build(input_size: int, weights=None):
    from dam_cnn_tf.backbones import BACKBONE
    from dam_cnn_tf.backbones.face_resnet.model import build_face_resnet

    return build_face_resnet(weights=weights, include_top=False, input_shape=(input_size, input_size, 3),
                             name=BACKBONE), None


register(Backbone(
    name="face-resnet", family="face-resnet", build=_build,
    description="dlib's face-pretrained ResNet (public domain; damcnn-tf weights download face-resnet)",
    weights_description="face-api's face_recognition_model-weights_manifest.json or its converted file",
    weights_at_build=True, check_weights=read_face_resnet_weights, recipe="face-resnet",
    # The first convolution of the 256-, 128- and 64-channel stages (4x4, 8x8 and 17x17 maps in
    # front of them at 150x150): fine-tuning starts at one of them, the rest stays frozen.
    cut_points=("conv256_down_conv1_conv", "conv128_down_conv1_conv", "conv64_down_conv1_conv"),
    download="face-resnet"))
