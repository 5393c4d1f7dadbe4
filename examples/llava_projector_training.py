"""Hook a kvmm SigLIP vision tower + projector into a keras-hub causal LM (LLaVA style)
and train only the projector with ``model.fit``.

The language model is a small, randomly initialised keras-hub ``LlamaBackbone`` built from
a config (no download); swap in a real one (``keras_hub.models.LlamaBackbone.from_preset``)
and a pretrained tower (``--encoder google/siglip-base-patch16-224``) for real work.

    python examples/llava_projector_training.py --steps 20
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from kvmm.connector import VisionLanguageConnector, expand_image_placeholders
from kvmm.encoders import create_encoder
from kvmm.projectors import build_projector

# A small SigLIP architecture (random weights) so the example runs in seconds on a CPU.
TINY_SIGLIP = dict(
    image_size=32, patch_size=8, vision_hidden_dim=48, vision_num_layers=2, vision_num_heads=3,
    vision_intermediate_dim=64, text_hidden_dim=48, text_num_layers=1, text_num_heads=3,
    text_intermediate_dim=64, vocabulary_size=32, max_text_length=8,
)


class LlavaCausalLM(keras.Model):
    """Connector (tower + projector + splice) feeding a keras-hub Llama backbone; returns
    next-token logits ``(batch, length - 1, vocabulary)``."""

    def __init__(self, connector, backbone, **kwargs):
        super().__init__(**kwargs)
        self.connector = connector
        self.backbone = backbone

    def call(self, inputs):
        spliced = self.connector(inputs)
        x, mask = spliced["embeddings"], spliced["padding_mask"]
        for layer in self.backbone.transformer_layers:
            x = layer(x, decoder_padding_mask=mask)
        x = self.backbone.layer_norm(x)
        return self.backbone.token_embedding(x, reverse=True)[:, :-1]


def build(encoder: str | None = None, weights="auto", projector_type: str = "mlp2x_gelu",
          llm_dim: int = 32, vocabulary_size: int = 64, seed: int = 0):
    """(model, tower, projector, backbone, image_token_id)."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    if encoder is None:
        from kvmm.models.siglip import SigLIPModel

        tower = create_encoder(SigLIPModel(**TINY_SIGLIP), encoder_type="siglip")
    else:
        tower = create_encoder(encoder, weights=weights)
    projector = build_projector(
        {"mm_projector_type": projector_type, "mm_hidden_size": tower.hidden_dim,
         "hidden_size": llm_dim, "num_query_tokens": 4, "num_latents": 4, "num_heads": 2}
    )
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=vocabulary_size, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=llm_dim, intermediate_dim=2 * llm_dim,
    )
    image_token_id = vocabulary_size  # outside the vocabulary: a pure placeholder
    connector = VisionLanguageConnector(tower, projector, backbone.token_embedding, image_token_id)
    tower.trainable = False
    backbone.trainable = False
    return LlavaCausalLM(connector, backbone), tower, projector, backbone, image_token_id


def synthetic_data(num_samples: int, image_size: int, num_image_tokens: int, image_token_id: int,
                   seed: int = 0):
    """Bright or dark images; the caption after the image names which (token 5 or 6)."""
    rng = np.random.default_rng(seed)
    bright = rng.integers(0, 2, num_samples)
    images = rng.uniform(-1, 0, (num_samples, image_size, image_size, 3)).astype("float32")
    images += bright[:, None, None, None].astype("float32")
    prompts = [[1, image_token_id, 4, 5 + int(b), 2] for b in bright]  # BOS <image> "is" word EOS
    token_ids = expand_image_placeholders(prompts, image_token_id, num_image_tokens)
    return {"images": images, "token_ids": token_ids}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=None, help="kvmm name/repo/folder (default: tiny random SigLIP)")
    parser.add_argument("--projector", default="mlp2x_gelu")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="epochs of one batch-of-8 pass")
    args = parser.parse_args(argv)

    model, tower, projector, backbone, image_token_id = build(args.encoder, projector_type=args.projector)
    num_image_tokens = projector.compute_output_shape((1, tower.num_tokens, tower.hidden_dim))[1]
    size = tower.image_size[0] if isinstance(tower.image_size, tuple) else tower.image_size
    x = synthetic_data(args.samples, size, num_image_tokens, image_token_id)
    # Targets: the connector's labels (image positions -100) shifted by one.
    y = keras.ops.convert_to_numpy(model.connector(x)["labels"])[:, 1:]
    model({k: v[:2] for k, v in x.items()})  # build eagerly (Keras would trace with dummy ids)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100),
    )
    history = model.fit(x, y, batch_size=8, epochs=args.steps, verbose=0).history["loss"]
    print(f"trainable: {[w.path for w in model.trainable_weights]}")
    print(f"loss {history[0]:.4f} -> {history[-1]:.4f}")
    return model, history


if __name__ == "__main__":
    main()
