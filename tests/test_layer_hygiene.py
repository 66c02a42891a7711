"""Every custom layer through the shared Keras checks of tests/layer_checks.py."""

import pytest

from dam_cnn_tf import SERDLayer
from dam_cnn_tf.layers.decoders import ConvMultiPathDecoder, MultiPathDecoder
from dam_cnn_tf.layers.feature_scaling import FeatureScaler
from dam_cnn_tf.models.mpae import MultiPathAutoencoder
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.backbones.face_resnet.model import ChannelScale, DownsampleShortcut, FaceResNetPreprocess
from dam_cnn_tf.backbones.vgg_face.model import VGGFacePreprocess

from layer_checks import check_layer

pytestmark = pytest.mark.backends  # run under every Keras backend (README, Set up)

CASES = {
    "serd": (lambda **kw: SERDLayer(kernel_initializer="glorot_uniform", **kw), (3, 4, 5), {}),
    "serd-attention": (lambda **kw: SERDLayer(return_attention=True, **kw), (3, 4, 5), {}),
    "decoder": (lambda **kw: MultiPathDecoder(2, 6, **kw), (4,), {}),
    "conv-decoder": (lambda **kw: ConvMultiPathDecoder(2, (2, 3, 4), bottleneck_channels=3, **kw), (5,), {}),
    "feature-scaler": (lambda **kw: FeatureScaler(**kw), (6,), {}),
    "vgg-face-preprocess": (lambda **kw: VGGFacePreprocess(**kw), (4, 5, 3), {"high": 255.0}),
    "face-resnet-preprocess": (lambda **kw: FaceResNetPreprocess(size=8, **kw), (6, 9, 3), {"high": 255.0}),
    "channel-scale": (lambda **kw: ChannelScale(**kw), (3, 3, 4), {}),
    "downsample-shortcut": (lambda **kw: DownsampleShortcut(6, **kw), (4, 4, 3), {}),
    "mpae": (lambda **kw: MultiPathAutoencoder(6, encoder_units=4, num_paths=2, **kw), (6,), {}),
    "mpae-conv": (lambda **kw: MultiPathAutoencoder(12, encoder_units=4, num_paths=2, decoder="conv",
                                                    feature_shape=(2, 2, 3), **kw), (12,), {}),
    # The softmax layer stays in float32 under a mixed policy, so the probabilities are float32.
    "mpvs-net": (lambda **kw: MPVSNet(6, 3, encoder_units=4, num_paths=2, fc_units=5, **kw), (6,),
                 {"float32_layers": ("mpvs_fc2",)}),
}


# The short fit trains what ``call`` uses; the MPAE's decoders only train through ``reconstruct``.
@pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_hygiene(name):
    make, shape, options = CASES[name]
    check_layer(make, shape, **options)
