"""Distribution strategies for run_classifier and the other scripts (the original's TPUEstimator
placement, on tf.distribute): one device (the original's CPU/GPU behaviour), all local GPUs
(MirroredStrategy), several machines (MultiWorkerMirroredStrategy via TF_CONFIG) or a TPU, and
which task is the chief.
"""

import os
import socket
from typing import Dict, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


def configure_cpu_devices(num_cpu_devices: int) -> None:
    """Splits the CPU into `num_cpu_devices` logical devices. Must run before any TF op."""
    if num_cpu_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)


def _check_tpu_address_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A grpc:// TPU address that nobody answers makes TPU initialization hang forever."""
    host_port = address[len("grpc://"):] if address.startswith("grpc://") else address
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        raise ValueError(
            f"--tpu_name={address}: no TPU answers at {host_port} ({err}); expected the "
            "grpc://ip:8470 address of a running TPU node") from None


def create_tpu_strategy(tpu_name: Optional[str], tpu_zone: Optional[str] = None,
                        gcp_project: Optional[str] = None) -> tf.distribute.Strategy:
    """A TPUStrategy for a local TPU VM (tpu_name empty or 'local'), a TPU node name, or a
    grpc:// address. Without a TPU it raises a one-line ValueError, never hangs."""
    name = (tpu_name or "").strip()
    resolver_name = "local" if name in ("", "local") else name
    if resolver_name.startswith("grpc://"):
        _check_tpu_address_reachable(resolver_name)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=resolver_name, zone=tpu_zone, project=gcp_project)
        if resolver_name != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as err:  # The resolver/initializer raise many types (URLError, NotFound).
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"--use_tpu=True but no TPU could be used (--tpu_name={tpu_name or ''!r}): "
            f"{first_line}. On a Colab/Cloud TPU VM install tensorflow and tensorflow-tpu of the "
            "same version and pass --tpu_name=local; for a TPU node pass its name or "
            "grpc://ip:8470.") from None
    if not tf.config.list_logical_devices("TPU"):
        raise ValueError(f"--use_tpu=True but no TPU device is visible (--tpu_name={name!r})")
    return tf.distribute.TPUStrategy(resolver)


def create_strategy(distribution_strategy: str = "one_device", use_tpu: bool = False,
                    tpu_name: Optional[str] = None, tpu_zone: Optional[str] = None,
                    gcp_project: Optional[str] = None) -> tf.distribute.Strategy:
    """The strategy for the flags: TPU if use_tpu, else one_device / mirrored /
    multi_worker_mirrored (TF_CONFIG describes the cluster)."""
    if use_tpu:
        return create_tpu_strategy(tpu_name, tpu_zone, gcp_project)
    if distribution_strategy == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if distribution_strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if distribution_strategy == "multi_worker_mirrored":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--distribution_strategy=multi_worker_mirrored needs the TF_CONFIG "
                             "environment variable describing the cluster and this task")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"--distribution_strategy={distribution_strategy}: expected one_device, "
                     "mirrored or multi_worker_mirrored")


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public class name of a strategy (TF's own classes are private subclasses)."""
    for cls, name in ((tf.distribute.TPUStrategy, "TPUStrategy"),
                      (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                      (tf.distribute.MirroredStrategy, "MirroredStrategy"),
                      (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy")):
        if isinstance(strategy, cls):
            return name
    return type(strategy).__name__


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def inference_strategy(strategy: tf.distribute.Strategy) -> tf.distribute.Strategy:
    """Where eval, predict and encoding run: the strategy itself, except that on several
    workers the chief infers by itself, on its own devices (a one-device strategy)."""
    return create_strategy("one_device") if is_multi_worker(strategy) else strategy


def is_chief_task(task_type: Optional[str], task_id: Optional[int],
                  cluster: Dict[str, object]) -> bool:
    """True for the one task of a TF_CONFIG cluster that writes into output_dir: the 'chief'
    task when the cluster has one, else worker 0 (no task type: a single process)."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one task that writes into output_dir (worker 0, or the 'chief' task)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return is_chief_task(resolver.task_type, resolver.task_id,
                         resolver.cluster_spec().as_dict())
