"""The demo: synthetic captioned images (:mod:`kvmm.demo.shapes`) and the small SigLIP
model the repository trains on them and ships, ``SigLIPDemo(weights="shapes")``.

>>> from kvmm.demo import shapes
>>> from kvmm.models.siglip import SigLIPDemo
>>> from kvmm.zero_shot import ZeroShotClassifier
>>> model = SigLIPDemo(weights="shapes")                                   # doctest: +SKIP
>>> classifier = ZeroShotClassifier(model, shapes.labels(), templates=["{}"])  # doctest: +SKIP
>>> image, truth = shapes.generate(1, seed=123)[0]
>>> classifier.predict([image])                                            # doctest: +SKIP
['a large blue star']

``examples/train_demo_model.py`` trains it; ``examples/demo.py`` (``make demo``) shows it.
"""

from kvmm.demo import shapes  # noqa: F401
