"""phenocast: forecast monthly NDVI images with a ConvLSTM + FCN network, and score it against baselines.

Modules: ``config`` (the config tree), ``zones`` (zone discovery and GeoTIFF I/O), ``tiling`` (window grid
and stitcher), ``records`` (TFRecord schema), ``preprocess`` (zones → records), ``origins`` (which
forecast origins train, validate and forecast), ``features`` (climatology, EMA, damped: numpy and TF),
``baselines``, ``metrics``, ``evaluate`` (backtests), ``dataset`` (tf.data samples), ``device_data``
(samples assembled on the device), ``devices`` and ``cluster`` (strategies, TF_CONFIG), ``pipeline`` and
``training`` (the stages of run.py), ``forecast`` and ``postprocess`` (predictions to the submission),
``report``, ``synthetic`` and ``sample`` (the built-in synthetic world).
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine) would drown the one-line messages;
# set TF_CPP_MIN_LOG_LEVEL yourself to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's default CPU allocator returns big buffers to the system and page-faults on every new
# activation (element-wise ops ~4× slower here); the BFC allocator reuses memory. Must be set before
# TensorFlow starts, so it is set here as well as in ``model``.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

__version__ = "0.1.0"


def import_tensorflow_quietly():
    """Import TensorFlow with its start-up lines (CUDA probing on CPU machines) kept off stderr.

    Those lines are printed by native code while the library loads, before TF_CPP_MIN_LOG_LEVEL can take
    effect; they would bury the one-line messages of the scripts. Errors still raise as usual.
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
