"""phenocast: forecast monthly NDVI images with a ConvLSTM + FCN network, and score it against baselines.

Modules: ``config`` (the config tree), ``zones`` (zone discovery and GeoTIFF I/O), ``tiling`` (window grid
and stitcher), ``records`` (TFRecord schema), ``preprocess`` (zones → records), ``origins`` (which
forecast origins train, validate and forecast), ``baselines``, ``metrics``, ``evaluate`` (backtests),
``sample`` (the built-in synthetic sample).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine) would drown the one-line messages;
# set TF_CPP_MIN_LOG_LEVEL yourself to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
