"""``VisionTower``: a kvmm vision encoder that returns the hidden states of one layer,
with the tokens a language model should see."""

from __future__ import annotations

import keras

STRATEGIES = ("default", "patch", "cls", "full")


@keras.saving.register_keras_serializable(package="kvmm")
class VisionTower(keras.Model):
    """Features ``(batch, tokens, hidden_dim)`` of a kvmm vision encoder for an LLM.

    Args:
        vision_model: a kvmm vision encoder (``model.vision_model`` of a SigLIP, CLIP or
            BiomedCLIP model) whose ``call(images, return_hidden_states=True)`` returns
            ``"hidden_states"`` indexed like transformers' ``output_hidden_states``
            (index 0: embeddings, ``i``: output of layer ``i``).
        has_cls_token: whether token 0 of the hidden states is a class token.
        vision_feature_layer: which hidden state to take (``-1`` last, ``-2`` second to
            last, as LLaVA's ``mm_vision_select_layer``).
        vision_feature_select_strategy: ``"default"`` drops the class token where the tower
            has one (SigLIP keeps every patch), ``"patch"`` the patch tokens only, ``"cls"``
            the class token only (``(batch, 1, dim)``; an error for towers without one),
            ``"full"`` every token.
        encoder_type: the family name, kept for information (``"siglip"``, ``"clip"``...).
    """

    def __init__(
        self,
        vision_model,
        has_cls_token: bool,
        vision_feature_layer: int = -2,
        vision_feature_select_strategy: str = "default",
        encoder_type: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vision_feature_select_strategy not in STRATEGIES:
            raise ValueError(
                f"Unknown vision_feature_select_strategy {vision_feature_select_strategy!r}; "
                f"choose one of {', '.join(STRATEGIES)}."
            )
        if vision_feature_select_strategy == "cls" and not has_cls_token:
            raise ValueError(
                f"vision_feature_select_strategy='cls' needs a tower with a class token; "
                f"{encoder_type or 'this'} tower has none (use 'default', 'patch' or 'full')."
            )
        num_states = vision_model.num_layers + 1
        if not -num_states <= vision_feature_layer < num_states:
            raise ValueError(
                f"vision_feature_layer={vision_feature_layer} is out of range: the tower has "
                f"{num_states} hidden states (embeddings + {vision_model.num_layers} layers), "
                f"so use -{num_states}..{num_states - 1}."
            )
        self.vision_model = vision_model
        self.has_cls_token = bool(has_cls_token)
        self.vision_feature_layer = int(vision_feature_layer)
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.encoder_type = encoder_type

    @property
    def hidden_dim(self) -> int:
        """Width of the features."""
        return self.vision_model.hidden_dim

    @property
    def image_size(self):
        return self.vision_model.image_size

    @property
    def num_tokens(self) -> int:
        """Number of tokens per image the tower returns."""
        total = self.vision_model.num_tokens
        strategy = self.vision_feature_select_strategy
        if strategy == "cls":
            return 1
        if strategy in ("default", "patch") and self.has_cls_token:
            return total - 1
        return total

    def _select(self, states):
        strategy = self.vision_feature_select_strategy
        if strategy == "cls":
            return states[:, :1]
        if strategy in ("default", "patch") and self.has_cls_token:
            return states[:, 1:]
        return states

    def call(self, images):
        states = self.vision_model(images, return_hidden_states=True)["hidden_states"]
        return self._select(states[self.vision_feature_layer])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            vision_model=keras.saving.serialize_keras_object(self.vision_model),
            has_cls_token=self.has_cls_token,
            vision_feature_layer=self.vision_feature_layer,
            vision_feature_select_strategy=self.vision_feature_select_strategy,
            encoder_type=self.encoder_type,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["vision_model"] = keras.saving.deserialize_keras_object(config["vision_model"])
        return cls(**config)
