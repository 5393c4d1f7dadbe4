"""What every image-text dual encoder in kvmm shares: input handling, embeddings, checks."""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np
from keras import ops


def l2_normalize(x):
    """``x / ||x||`` along the last axis, in float32 (as the references do)."""
    x = ops.cast(x, "float32")
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-24))


def numpy_l2_normalize(x) -> np.ndarray:
    x = np.asarray(x).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_images(name: str, image_size: tuple[int, int], images) -> None:
    """Refuse images that are not ``(batch, H, W, 3)`` at the model's resolution."""
    shape = tuple(images.shape)
    expected = (*image_size, 3)
    if len(shape) != 4 or (None not in shape[1:] and shape[1:] != expected):
        hint = ""
        if len(shape) == 4 and shape[1] == 3 and shape[-1] != 3:
            hint = " Images must be channels-last (N, H, W, 3)."
        raise ValueError(
            f"{name} expects images of shape (batch, {expected[0]}, {expected[1]}, 3) but got "
            f"{shape}.{hint} Use the model's processor (Processor.for_model(model)), or build "
            f"the model with another input_shape to change its resolution."
        )


def check_token_ids(name: str, max_length: int, token_ids) -> None:
    """Refuse token ids that are not ``(batch, length <= max_length)``."""
    shape = tuple(token_ids.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} expects token ids of shape (batch, length), got {shape}.")
    if shape[1] is not None and shape[1] > max_length:
        raise ValueError(
            f"Text is {shape[1]} tokens long but {name} has {max_length} positions. Tokenize "
            f"with sequence_length={max_length} (Processor.for_model(model) does this)."
        )


def _batch_shards() -> int:
    """How many ways a batch is split by the active ``keras.distribution`` (1 if none)."""
    if keras.backend.backend() != "jax":
        return 1
    distribution = keras.distribution.distribution()
    mesh = getattr(distribution, "device_mesh", None)
    axis = getattr(distribution, "batch_dim_name", None)
    if mesh is None or axis not in mesh.axis_names:
        return 1
    return int(mesh.shape[mesh.axis_names.index(axis)])


# One ``tf.function`` per tower (TensorFlow only), kept as long as the tower lives.
_TENSORFLOW_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _tensorflow_step(tower):
    """``tower(x, training=False)`` as a ``tf.function`` made once per tower and traced once
    per input shape (``reduce_retracing``, as Keras' own ``predict_function``). Made anew
    when the tower's variables change (``enable_lora`` adds some, and changes what the
    traced graph must compute)."""
    variables = tuple(id(v) for v in tower.weights)
    step, seen = _TENSORFLOW_STEPS.get(tower, (None, None))
    if step is None or seen != variables:
        import tensorflow as tf

        reference = weakref.ref(tower)  # the cache must not keep the tower alive

        def infer(x):
            return reference()(x, training=False)

        step = tf.function(infer, reduce_retracing=True)
        _TENSORFLOW_STEPS[tower] = (step, variables)
    return step


def _tensorflow_predict(tower, inputs, batch_size: int) -> np.ndarray:
    """Keras' ``predict`` on TensorFlow, without its ``tf.data`` pipeline: a Python loop over
    NumPy slices calling one compiled graph. Measured on a 2-core Intel Xeon, ``predict``
    flipped between runs using both cores and using one (SigLIP Base texts 22 -> 12.5/s,
    CPU time / wall time 1.9 -> 1.07) while this loop stayed at 22/s with both cores."""
    import tensorflow as tf

    step = _tensorflow_step(tower)
    inputs = np.asarray(inputs)
    outputs = [
        np.asarray(step(tf.convert_to_tensor(inputs[start:start + batch_size])))
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]


#: Most tokens per forward pass on a CPU device, JAX and PyTorch (see ``_cpu_rows``).
CPU_TOKENS_PER_CALL = 2048


def _on_cpu(tower) -> bool:
    backend = keras.backend.backend()
    if backend == "torch":
        return bool(tower.weights) and tower.weights[0].value.device.type == "cpu"
    if backend == "jax":
        from kvmm.layers.attention import _jax_on_cpu

        return _jax_on_cpu()
    return False


def _cpu_rows(tower, inputs, batch_size: int) -> int:
    """Rows per forward pass on a CPU device (JAX, PyTorch): ``batch_size`` split into
    equal passes of at most ``CPU_TOKENS_PER_CALL`` tokens each (32 SigLIP Base images:
    4 passes of 8; 256 texts of 64 tokens: 8 passes of 32). Results are the same rows
    either way (each row is independent; within 3e-6 of one pass, from the matmuls' order).

    Measured on 2-core CPUs. PyTorch's CPU allocator takes every large activation from
    fresh, zero-filled pages and gives them back after use (no caching, unlike its CUDA
    allocator): a 256-text SigLIP Base batch touched 10 GB of fresh memory per call (2.7 M
    page faults, 14-27 s of kernel time out of 20-30 s) on an Intel Xeon; the same texts in
    passes of 32 ran at 19.5 texts/s instead of 8-12, and 32 images in passes of 8 at 6.4
    images/s instead of 3-3.5. XLA (JAX) reuses its buffers but a pass's activations
    outgrow the caches (at batch 32 the MLP's hidden activation is 77 MB, the attention
    scores 60 MB, against a 32 MB L3): on an AMD EPYC, SigLIP Base images in one pass of
    32 ran at 4.6-4.9/s, in passes of 8 at 5.0-5.4/s; 256 texts 15.1-15.5/s in one pass,
    15.7-17.8/s in passes of 32. TensorFlow runs its graph as it is: one pass of 32 images
    was as fast as passes of 8 there (5.00 against 4.99/s)."""
    if not _on_cpu(tower):
        return batch_size
    tokens = getattr(tower, "num_tokens", None) if np.ndim(inputs) == 4 else None
    tokens = tokens or (np.shape(inputs)[1] if np.ndim(inputs) >= 2 else 1)
    batch_size = min(batch_size, len(inputs))
    cap = max(1, CPU_TOKENS_PER_CALL // max(int(tokens), 1))
    passes = -(-batch_size // cap)
    return -(-batch_size // passes)


def predict_batches(tower, inputs, batch_size: int) -> np.ndarray:
    """``tower.predict(inputs, batch_size)``: Keras' compiled inference loop (one trace per
    input shape; see docs/performance.md). On TensorFlow the same graph runs from a plain
    loop instead (see ``_tensorflow_predict``); on a CPU device (JAX, PyTorch) batches run
    in equal passes of at most ``CPU_TOKENS_PER_CALL`` tokens (see ``_cpu_rows``).

    Under a ``keras.distribution`` that splits batches over ``k`` devices, every batch
    must be a multiple of ``k``: ``batch_size`` is rounded up to one and the inputs are
    padded (repeating the last row) to whole batches; the padding rows are dropped from the
    result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    shards = _batch_shards()
    count = len(inputs)
    if count == 0:  # Keras' predict fails on empty input with an unrelated error
        return np.zeros((0, int(tower.output_dim)), "float32")
    if shards > 1:
        inputs = np.asarray(inputs)
        batch_size = -(-min(batch_size, count) // shards) * shards
        padding = -count % batch_size
        if padding:
            inputs = np.concatenate([inputs, np.repeat(inputs[-1:], padding, axis=0)])
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_predict(tower, inputs, batch_size)
    if shards == 1:
        batch_size = _cpu_rows(tower, inputs, batch_size)
    return tower.predict(inputs, batch_size=batch_size, verbose=0)[:count]


class RecordedConfig:
    """Mixin for kvmm models and towers: ``get_config()`` is Keras' base config plus the
    constructor's own arguments, recorded by ``self._record_arguments(locals())`` first
    thing in ``__init__`` (so ``from_config`` rebuilds the same model). Tuples are stored
    as lists (JSON); ``image_size`` always as a ``[height, width]`` pair."""

    def _record_arguments(self, arguments: dict) -> None:
        from kvmm.utils.images import image_size_pair

        recorded = {}
        for key, value in arguments.items():
            if key in ("self", "kwargs", "__class__"):
                continue
            if key == "image_size":
                value = image_size_pair(value)
            recorded[key] = list(value) if isinstance(value, tuple) else value
        # Not an attribute Keras tracks: a plain dict of JSON values.
        object.__setattr__(self, "_recorded_arguments", recorded)

    def get_config(self):
        config = super().get_config()
        config.update(self._recorded_arguments)
        return config


#: Model arguments that fix the shape of a dual encoder's towers (checked against a
#: checkpoint's config by the loader; families add their own).
VISION_ARCHITECTURE_KEYS = (
    "patch_size", "vision_hidden_dim", "vision_num_layers", "vision_num_heads",
    "vision_intermediate_dim",
)
TEXT_ARCHITECTURE_KEYS = ("text_hidden_dim", "text_num_layers", "text_num_heads", "text_intermediate_dim")


def tower_arguments(arguments: dict, prefix: str) -> dict:
    """A dual encoder's ``prefix``-ed constructor arguments for one tower, the prefix
    dropped (``vision_hidden_dim`` -> ``hidden_dim`` with ``prefix="vision_"``)."""
    return {k[len(prefix):]: v for k, v in arguments.items() if k.startswith(prefix)}


class DualEncoder(RecordedConfig, keras.Model):
    """Base of the image-text models: ``vision_model`` and ``text_model`` towers whose calls
    return the (unnormalized) embeddings, and ``logits(image_emb, text_emb)``.

    Inputs are ``{"images": (N, H, W, 3), "token_ids": (M, L)}`` (``"input_ids"`` is accepted
    for ``"token_ids"``, other keys such as a processor's extras are ignored); outputs are
    ``{"image_logits": (N, M), "text_logits": (M, N)}`` in float32.
    """

    family = "model"
    #: How logits become probabilities: ``"sigmoid"`` (SigLIP: every image-text pair on
    #: its own) or ``"softmax"`` (CLIP, BiomedCLIP: a distribution over the texts).
    probability = "softmax"

    def _init_attributes(self, variant, arguments: dict):
        """Record the constructor ``arguments`` (``locals()``) for ``get_config``; set the
        variant name and the attributes the weight loader fills in."""
        self._record_arguments(arguments)
        self.variant = variant
        # Set by the weight loader: where the weights came from, and the checkpoint's own
        # vocabulary (file and Hub repo) for Processor.for_model(model).
        self.weights_source = None
        self.vocabulary_path = None
        self.vocabulary_repo = None

    # -- properties used by processors and loaders -------------------------------------
    @property
    def image_size(self) -> int | tuple[int, int]:
        """Input resolution: an int for square inputs, else ``(height, width)``."""
        height, width = self.vision_model.image_size
        return height if height == width else (height, width)

    @property
    def max_text_length(self) -> int:
        """Number of text positions."""
        return self.text_model.max_length

    @property
    def vocabulary_size(self) -> int:
        return self.text_model.vocabulary_size

    @property
    def embedding_dim(self) -> int:
        return self.vision_model.output_dim

    # -- forward ----------------------------------------------------------------------
    def _unpack(self, inputs):
        if not isinstance(inputs, dict):
            raise TypeError(
                f'{type(self).__name__} expects a dict {{"images": ..., "token_ids": ...}}, '
                f"got {type(inputs).__name__}."
            )
        images = inputs.get("images")
        token_ids = inputs.get("token_ids", inputs.get("input_ids"))
        missing = [k for k, v in (("images", images), ("token_ids", token_ids)) if v is None]
        if missing:
            raise KeyError(
                f"{type(self).__name__} inputs lack {missing}; got keys {sorted(inputs)}. Use "
                f"encode_images / encode_texts to embed only one modality."
            )
        return images, token_ids

    def call(self, inputs):
        images, token_ids = self._unpack(inputs)
        image_embeddings = l2_normalize(self.vision_model(images))
        text_embeddings = l2_normalize(self.text_model(token_ids, **self._text_arguments(inputs)))
        image_logits, text_logits = self.logits(image_embeddings, text_embeddings)
        return {"image_logits": image_logits, "text_logits": text_logits}

    def _text_arguments(self, inputs) -> dict:
        """Extra inputs of the text tower taken from the input dict (e.g. a padding mask)."""
        return {}

    def logits(self, image_embeddings, text_embeddings):
        """``(image_logits, text_logits)`` from L2-normalized embeddings, in float32."""
        cosine = ops.matmul(
            ops.cast(text_embeddings, "float32"),
            ops.transpose(ops.cast(image_embeddings, "float32")),
        )
        text_logits = self._scale_logits(cosine)
        return ops.transpose(text_logits), text_logits

    def _scale_logits(self, cosine):
        """Cosine similarities ``(texts, images)`` -> the family's logits."""
        raise NotImplementedError

    def probabilities(self, image_logits):
        """``image_logits`` ``(N, M)`` -> probabilities with the family's activation:
        element-wise sigmoid for SigLIP, softmax over the texts (last axis) otherwise."""
        logits = ops.cast(image_logits, "float32")
        if self.probability == "sigmoid":
            return ops.sigmoid(logits)
        return ops.softmax(logits, axis=-1)

    def compute_output_spec(self, inputs):
        images, token_ids = self._unpack(inputs)
        n, m = images.shape[0], token_ids.shape[0]
        return {
            "image_logits": keras.KerasTensor((n, m), dtype="float32"),
            "text_logits": keras.KerasTensor((m, n), dtype="float32"),
        }

    # -- training -------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss hook. With an image-text loss (``kvmm.losses.SigmoidLoss`` /
        ``ContrastiveLoss``) the batch's pairs are the labels, so ``fit`` and ``evaluate``
        take batches of ``{"images", "token_ids"}`` with no ``y``; the loss reads the logits
        of the one forward pass Keras already made. Any other compiled loss goes through
        Keras' usual path (with ``y``)."""
        from kvmm.losses import ImageTextLoss

        loss = getattr(self, "loss", None)
        if not isinstance(loss, ImageTextLoss):
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        if y is not None:
            raise ValueError(
                f"{type(loss).__name__} takes its labels from the pairs in the batch; fit on "
                f'batches of {{"images", "token_ids"}} without y (got y of type '
                f"{type(y).__name__})."
            )
        total = loss(None, y_pred, sample_weight=sample_weight)
        for extra in self.losses:
            total = total + ops.cast(self._aggregate_additional_loss(extra), total.dtype)
        return total

    # -- inference helpers --------------------------------------------------------------
    def encode_images(self, images, batch_size: int = 32) -> np.ndarray:
        """L2-normalized image embeddings ``(N, embedding_dim)`` as a float32 NumPy array.

        ``images`` is a preprocessed ``(N, H, W, 3)`` batch (the processor's ``"images"``).
        Runs Keras' inference path (``predict``: XLA on JAX, a ``tf.function`` graph on
        TensorFlow, eager under ``no_grad`` on PyTorch) in batches of ``batch_size``.
        For differentiable embeddings, call ``l2_normalize(model.vision_model(images))``.
        """
        check_images(self.vision_model.name, self.vision_model.image_size, images)
        pooled = predict_batches(self.vision_model, images, batch_size)
        return numpy_l2_normalize(pooled)

    def encode_texts(self, token_ids, batch_size: int = 256) -> np.ndarray:
        """L2-normalized text embeddings ``(M, embedding_dim)`` as a float32 NumPy array.

        ``token_ids`` is the processor's ``"token_ids"`` (``(M, L)``, ``L <= max_text_length``).
        """
        token_ids = np.asarray(token_ids)
        if token_ids.ndim != 2 or token_ids.shape[1] > self.max_text_length:
            raise ValueError(
                f"token_ids must be (batch, length <= {self.max_text_length}), "
                f"got shape {token_ids.shape}."
            )
        pooled = predict_batches(self.text_model, token_ids.astype("int32"), batch_size)
        return numpy_l2_normalize(pooled)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("image_size"), list):
            config["image_size"] = tuple(config["image_size"])
        return cls(**config)


class SoftmaxDualEncoder(DualEncoder):
    """A CLIP-style dual encoder: ``logits = cosine * exp(logit_scale)`` with one learned
    scalar temperature (initialised to CLIP's ``log(1 / 0.07)``) and softmax probabilities
    over the texts. CLIP and BiomedCLIP derive from it."""

    probability = "softmax"

    def build(self, input_shape=None):
        if self.built:
            return
        self.logit_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(1 / 0.07)),
            name="logit_scale",
        )
        self.built = True

    def _scale_logits(self, cosine):
        return cosine * ops.exp(ops.cast(self.logit_scale, "float32"))
