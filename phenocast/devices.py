"""Devices and distribution: one GPU, several GPUs, several machines, or the CPU split for testing.

``configure_devices(config)`` must run before TensorFlow touches a device. It

- lets GPU memory grow as needed (``train.memory_growth``) instead of grabbing all of it;
- picks the strategy: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster (one process
  per machine, each with the same command; see the README), ``MirroredStrategy`` over all GPUs when more
  than one is visible, ``MirroredStrategy`` over ``train.cpu_devices`` logical CPU devices when that is
  above 1 (to exercise the multi-device path on a CPU-only machine), else the default strategy;
- sets the mixed-precision policy (``train.mixed_precision``; float16 compute on GPUs, float32
  outputs and loss, handled by ``model``).

The global batch is ``batch_size × replicas``; Keras splits each batch across the replicas.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from phenocast.config import Config

_configured: dict = {}


def configure_devices(config: Config, log=print) -> tf.distribute.Strategy:
    """Set memory growth, logical CPU devices and precision; return the distribution strategy."""
    key = (config.train.memory_growth, config.train.cpu_devices)
    if "strategy" in _configured and _configured["key"] == key:
        strategy = _configured["strategy"]
    else:
        strategy = _make_strategy(config, log)
        _configured.update(key=key, strategy=strategy)
    from model import set_precision

    set_precision(config)
    return strategy


def _make_strategy(config: Config, log) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    if config.train.memory_growth:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: the setting can no longer change
                pass
    if os.environ.get("TF_CONFIG"):
        cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        log(f"devices: multi-worker mirrored strategy over {sum(len(v) for v in cluster.values())} "
            f"worker(s) from TF_CONFIG")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(gpus) > 1:
        log(f"devices: mirrored strategy over {len(gpus)} GPUs")
        return tf.distribute.MirroredStrategy()
    if config.train.cpu_devices > 1 and not gpus:
        split_cpu(config.train.cpu_devices)
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        log(f"devices: mirrored strategy over {len(devices)} logical CPU devices")
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def split_cpu(count: int) -> None:
    """Split the physical CPU into ``count`` logical devices (before TensorFlow initialises devices)."""
    (cpu,) = tf.config.list_physical_devices("CPU")[:1]
    existing = tf.config.get_logical_device_configuration(cpu)
    if existing and len(existing) == count:
        return
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def replicas(strategy: tf.distribute.Strategy) -> int:
    return strategy.num_replicas_in_sync
