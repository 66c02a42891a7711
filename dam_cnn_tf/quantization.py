"""How a light file may store its numbers: one list for the export function, the ``export``
command and the recipe check, kept free of TensorFlow so that the command line and the recipe
reader can use it without starting it."""

QUANTIZE = ("float16", "dynamic", "int8")
INT8 = "int8"  # weights and activations int8, scaled on calibration faces
# fewer faces than this measure an activation's range from too little to trust
MIN_CALIBRATION_FACES = 16
