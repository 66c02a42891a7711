"""DAM-CNN's two stages (Algorithm 1) on tiny generated images, in about a minute on a CPU.

Stage 1 fine-tunes VGG-SERD (Eq. 4); stage 2 freezes it, extracts salient features once,
pairs each sample with same-class targets and trains MPVS-Net (Eq. 10-11); the assembled
inference model then returns probabilities and the SERD attention mask.
"""

import numpy as np
import keras

import dam_cnn_tf as dam

rng = np.random.default_rng(0)
labels = rng.integers(0, 2, size=64)
vertical = np.tile((np.arange(32) // 4 % 2) * 200.0, (32, 1))  # class 0: vertical stripes
images = np.where(labels[:, None, None] == 1, vertical.T, vertical)  # class 1: horizontal
images = (images[..., None] + rng.uniform(0, 40, size=(64, 32, 32, 3))).astype("float32")

# Stage 1: VGG-SERD, cross-entropy plus the SERD regularizer.
vgg_serd = dam.build_vgg_serd(2, input_shape=(32, 32, 3), fc_units=16, backbone_widths=(4, 4, 8, 8, 8))
dam.compile_vgg_serd(vgg_serd, learning_rate=1e-3)
vgg_serd.fit(images, labels, epochs=8, batch_size=16, verbose=2)

# Stage 2: salient features, same-class targets for N = 3 paths, MPVS-Net.
features = dam.salient_feature_model(vgg_serd).predict(images, verbose=0)["features"]
targets = np.stack([features[rng.choice(np.flatnonzero(labels == y), 3)] for y in labels])
net = dam.MPVSNet(features.shape[1], 2, encoder_units=32, num_paths=3, fc_units=16, lam=20.0)
net.mpae.adapt(features)
net.compile(optimizer=keras.optimizers.Adam(1e-3), mpae_optimizer=keras.optimizers.Adam(1e-3))
net.fit(features, {"label": labels, "targets": targets}, epochs=10, batch_size=16, verbose=2)

model = dam.build_dam_cnn(vgg_serd, net)
out = model.predict(images[:4], verbose=0)
print("predicted", out["probabilities"].argmax(1), "true", labels[:4], "attention", out["attention"].shape)
