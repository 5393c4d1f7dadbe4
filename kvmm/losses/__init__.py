"""Image-text training losses: ``SigmoidLoss`` (SigLIP) and ``ContrastiveLoss`` (CLIP).

Both read the model's output logits, which already carry its learnable temperature
(``logit_scale``) and, for SigLIP, ``logit_bias``. Compile a kvmm model with one of them and
fit on batches of matching pairs ``{"images": (B, H, W, 3), "token_ids": (B, L)}`` with no
labels: pair ``i`` of the batch is image ``i`` with text ``i``::

    model.compile(optimizer=keras.optimizers.AdamW(1e-5), loss=kvmm.losses.SigmoidLoss())
    model.fit(dataset)

They accept the model's output dict (they use ``"text_logits"``, shape ``(B, B)``) or a
logits matrix ``(texts, images)``, and always compute in float32 (also under
``mixed_bfloat16``).
"""

from kvmm.losses.image_text import ContrastiveLoss, ImageTextLoss, SigmoidLoss

__all__ = ["ContrastiveLoss", "ImageTextLoss", "SigmoidLoss"]
