"""The paper's hyper-parameters (§4.1.2, Table 1) as the package defaults."""

from __future__ import annotations

import dataclasses

# Learning rate of VGG-SERD fine-tuning (stage 1, Eq. 4), written alpha_S in Algorithm 1.
ALPHA_S = 1e-5
# Learning rate of the MPAE, encoder and decoders (stage 2, Eq. 11).
ALPHA_M = 1e-4
# Learning rate of the two fully-connected layers of MPVS-Net (stage 2, Eq. 10).
ALPHA_FC = 1e-4
# Weights of the two parts of the SERD regularizer (Eq. 3).
GAMMA1 = 1e-3
GAMMA2 = 1e-4
# Weight of the cross-entropy in the MPAE objective (Eq. 11).
LAMBDA = 20.0
DROPOUT = 0.5
# VGG-Face input (Table 1) and the MPAE / FC widths at full size.
INPUT_SIZE = 224
FC_UNITS = 4096
ENCODER_UNITS = 4096
# fc6's activations: VGG-Face's ReLU, or the MPAE encoder's sigmoid (Eq. 6).
FC6_ACTIVATIONS = ("relu", "sigmoid")
# Table 4: the paper tried 2 to 5 decoding paths; 5 was best on most datasets.
NUM_PATHS = 5


@dataclasses.dataclass
class HyperParameters:
    """Every training hyper-parameter, with the paper's values as defaults."""

    alpha_s: float = ALPHA_S
    alpha_m: float = ALPHA_M
    alpha_fc: float = ALPHA_FC
    gamma1: float = GAMMA1
    gamma2: float = GAMMA2
    lam: float = LAMBDA
    dropout: float = DROPOUT
    input_size: int = INPUT_SIZE
    fc_units: int = FC_UNITS
    encoder_units: int = ENCODER_UNITS
    num_paths: int = NUM_PATHS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
