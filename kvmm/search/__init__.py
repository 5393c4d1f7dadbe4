"""Image search on Milvus: index a folder of images, search it by text or by image.

Milvus Lite (a local ``.db`` file, nothing to start) is the default; the same code talks to
a Milvus server when given its URI. Needs the optional extra: ``pip install kvmm[search]``.

>>> from kvmm.search import ImageIndex                       # doctest: +SKIP
>>> index = ImageIndex("photos.db", embedder)                 # doctest: +SKIP
>>> index.index_folder("~/Pictures")                          # doctest: +SKIP
>>> index.search_text("a red circle", k=5)                    # doctest: +SKIP
"""

from kvmm.search.index import IMAGE_EXTENSIONS, ImageIndex, IndexReport, ModelMismatchError

__all__ = ["IMAGE_EXTENSIONS", "ImageIndex", "IndexReport", "ModelMismatchError"]
