"""Running kvmm models on several devices with Keras' own distribution API.

``keras.distribution`` decides where each variable and each batch lives; XLA (GSPMD) then
partitions the computation. It is implemented by Keras for the **JAX backend only**; on
TensorFlow and PyTorch these helpers raise a clear error (use one device there, or JAX).

Two layouts cover the uses:

* **data parallel** (:func:`data_parallel`): every device holds the whole model, each
  batch is split across the devices. For embedding large image sets
  (``model.encode_images``) and for fine-tuning (``model.fit``) of models that fit on one
  device.
* **model parallel** (:func:`model_parallel`): a 2-D ``("batch", "model")`` device mesh;
  the big kernels (attention query/key/value/output, MLP fc1/fc2, token embedding) are
  split along ``"model"`` by :func:`layout_map`, batches along ``"batch"``. For models
  whose weights (plus optimizer state when training) do not fit on one device, e.g.
  ``SigLIPSo400mP14``.

The distribution must be set **before** the model is built, so that each variable is
created (or loaded) directly with its layout::

    import keras, kvmm
    keras.distribution.set_distribution(kvmm.distribution.model_parallel(model_axis_size=4))
    model = kvmm.models.siglip.SigLIPSo400mP14(weights="google_384")
    embeddings = model.encode_images(images, batch_size=64)

The same patterns serve every family: all kvmm towers are built from the shared blocks in
:mod:`kvmm.layers`, whose variables are named ``.../attention/query/kernel``,
``.../mlp/fc1/kernel`` and so on. See ``docs/performance.md`` for multi-host JAX.
"""

from __future__ import annotations

import keras

#: Variable-path patterns (Keras matches them with ``re.fullmatch``) and how each variable
#: is split; ``"model"`` stands for the model axis. Column-parallel in, row-parallel out
#: (Megatron style): the query, key, value and fc1 kernels are split by output columns
#: (their biases alike), the attention output and fc2 kernels by input rows, so each block
#: needs one reduction.
LAYOUT_PATTERNS: tuple[tuple[str, tuple], ...] = (
    (r".*/attention/(query|key|value)/kernel", (None, "model")),
    (r".*/attention/(query|key|value)/bias", ("model",)),
    (r".*/attention/output/kernel", ("model", None)),
    (r".*/mlp/fc1/kernel", (None, "model")),
    (r".*/mlp/fc1/bias", ("model",)),
    (r".*/mlp/fc2/kernel", ("model", None)),
    (r".*/token_embedding/embeddings", (None, "model")),
)


def _require_jax(what: str) -> None:
    backend = keras.backend.backend()
    if backend != "jax":
        raise RuntimeError(
            f"{what} needs the JAX backend: Keras implements keras.distribution for JAX "
            f"only (KERAS_BACKEND is {backend!r}). Run with KERAS_BACKEND=jax, or on one "
            f"device."
        )


def layout_map(mesh: keras.distribution.DeviceMesh, model_axis: str = "model"):
    """A ``keras.distribution.LayoutMap`` that splits the attention and MLP kernels of any
    kvmm model along ``model_axis`` of ``mesh`` (see :data:`LAYOUT_PATTERNS`); every other
    variable (LayerNorms, position embeddings, heads' small tensors) is replicated.

    The split dimension must be divisible by the size of ``model_axis`` (heads x head
    width, MLP width, embedding width). For So400m (width 1152, MLP 4304) any power of two
    up to 16 works.
    """
    _require_jax("kvmm.distribution.layout_map")
    if model_axis not in mesh.axis_names:
        raise ValueError(f"mesh has axes {mesh.axis_names}; model_axis {model_axis!r} is not one.")
    layouts = keras.distribution.LayoutMap(mesh)
    for pattern, axes in LAYOUT_PATTERNS:
        layouts[pattern] = tuple(model_axis if a == "model" else a for a in axes)
    return layouts


def data_parallel(devices=None):
    """``keras.distribution.DataParallel`` over ``devices`` (default: all devices): each
    batch is split across the devices, the model is replicated. Set it with
    ``keras.distribution.set_distribution(...)`` before building the model. Batch sizes
    should be multiples of the number of devices."""
    _require_jax("kvmm.distribution.data_parallel")
    return keras.distribution.DataParallel(devices=devices)


def model_parallel(model_axis_size: int = 2, devices=None, batch_axis: str = "batch",
                   model_axis: str = "model"):
    """``keras.distribution.ModelParallel`` on a ``(batch, model)`` mesh of ``devices``
    (default: all) with ``model_axis_size`` devices per model replica, using
    :func:`layout_map`. ``model_axis_size=len(devices)`` shards every big kernel across all
    devices (pure model parallelism); smaller values mix data and model parallelism."""
    _require_jax("kvmm.distribution.model_parallel")
    devices = devices or keras.distribution.list_devices()
    if model_axis_size < 1 or len(devices) % model_axis_size:
        raise ValueError(
            f"model_axis_size={model_axis_size} must divide the number of devices "
            f"({len(devices)})."
        )
    mesh = keras.distribution.DeviceMesh(
        shape=(len(devices) // model_axis_size, model_axis_size),
        axis_names=(batch_axis, model_axis),
        devices=devices,
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map(mesh, model_axis=model_axis), batch_dim_name=batch_axis
    )
