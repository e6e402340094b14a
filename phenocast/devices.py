"""Devices and distribution: one GPU, several GPUs, several machines, or the CPU split for testing.

``configure_devices(config)`` must run before TensorFlow touches a device. It

- lets GPU memory grow as needed (``train.memory_growth``) instead of grabbing all of it;
- picks the strategy: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster (one process
  per machine, each with the same command; see the README), ``MirroredStrategy`` over all GPUs when more
  than one is visible, ``MirroredStrategy`` over ``train.cpu_devices`` logical CPU devices when that is
  above 1 (to exercise the multi-device path on a CPU-only machine), else the default strategy;
- sets the precision policy (``train.mixed_precision``, see ``model.precision_policy``: auto =
  bfloat16 compute on GPUs of compute capability >= 8, float16 with loss scaling on older GPUs, float32
  on a CPU; outputs and loss stay float32) and logs it once.

The global batch is ``batch_size × replicas``; Keras splits each batch across the replicas. Under
``MultiWorkerMirroredStrategy`` ``replicas`` counts the replicas of every worker, and each worker builds
the same global batches and keeps its slice (``auto_shard_policy`` DATA, see ``phenocast.dataset``).

Workers (``phenocast.cluster.worker()`` reads ``TF_CONFIG``; a malformed one is a one-line error): the chief
(task ``chief``, else ``worker`` 0) writes the run; every other worker writes only what it needs to
train in lock-step and to resume (its checkpoints, Keras backup, CSV log, ``stage.json``/``done.json``)
under ``<run>/.workers/worker-<k>/``, as the Keras multi-worker guide recommends, and skips the
stages that do not train (predict, postprocess, report).
"""

from __future__ import annotations

import os

import tensorflow as tf

from phenocast.cluster import Worker, worker  # noqa: F401  (re-exported)
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

    policy = set_precision(config)
    if _configured.get("policy") != policy:  # once per process (each stage configures again)
        log(f"devices: precision {policy} (train.mixed_precision: {config.train.mixed_precision})")
        _configured["policy"] = policy
    return strategy


def _make_strategy(config: Config, log) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    if config.train.memory_growth:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: the setting can no longer change
                pass
    if os.environ.get("TF_CONFIG", "").strip():
        this = worker()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_for_multi_worker()
        log(f"devices: multi-worker mirrored strategy over {this.count} worker(s) from TF_CONFIG, "
            f"{strategy.num_replicas_in_sync} replica(s); this is worker {this.index}"
            + (" (chief)" if this.chief else f", writing to {this.private_folder}"))
        return strategy
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


def _patch_keras_for_multi_worker() -> None:
    """Work around two failures of Keras 3's TensorFlow trainer under ``MultiWorkerMirroredStrategy``.

    - ``fit``'s first "symbolic build" takes one distributed batch and averages it over the replicas
      with ``strategy.reduce`` to learn its shapes; under multi-worker that reduce fails ("Attempt to
      convert a value (PerReplica…) to a Tensor"). The shapes of this worker's first local replica
      serve as well (the batch axis only sizes symbolic tensors).
    - The per-step logs (loss, metric results: scalars) are averaged with ``strategy.reduce("MEAN",
      value, axis=0)``, which fails on a scalar; scalars are averaged with ``axis=None`` instead.

    Idempotent; only installed when ``TF_CONFIG`` asks for multi-worker training.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_phenocast_patched", False):
        return
    reduce_per_replica = trainer.reduce_per_replica

    def reduce_scalars_too(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def reduce(value):  # a tensor (one local replica) or PerReplica
                if all(local.shape.rank == 0 for local in strategy.experimental_local_results(value)):
                    return strategy.reduce("MEAN", value, axis=None)
                return reduce_per_replica(value, strategy, reduction)

            return tree.map_structure(reduce, values)
        return reduce_per_replica(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues) else value, next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_scalars_too
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer._phenocast_patched = True
