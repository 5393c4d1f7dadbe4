"""An image index on Milvus (Milvus Lite file or server URI) built with a kvmm Embedder."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from kvmm.errors import KvmmError

#: File name endings indexed by :meth:`ImageIndex.index_folder`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

IMAGES = "kvmm_images"
META = "kvmm_meta"
_MAX_PATH = 4096


class ModelMismatchError(KvmmError, ValueError):
    """The index was built with another model than the one querying or updating it."""


def _milvus():
    try:
        import pymilvus
    except ImportError as exc:
        raise KvmmError(
            "Image search needs Milvus: pip install kvmm[search] (pymilvus and milvus-lite)."
        ) from exc
    return pymilvus


def model_identity(embedder, weights_label: str | None = None) -> dict:
    """What identifies the embedding space: variant, weights source and embedding size."""
    model = embedder.model
    return {
        "variant": getattr(model, "variant", type(model).__name__),
        "weights": str(weights_label or getattr(model, "weights_source", None) or "unknown"),
        "dim": int(embedder.dim),
    }


@dataclasses.dataclass
class IndexReport:
    """What one :meth:`ImageIndex.index_folder` run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list = dataclasses.field(default_factory=list)  # (path, message)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class ImageIndex:
    """A folder's images and their embeddings in a Milvus collection.

    Args:
        uri: a Milvus Lite file (``"photos.db"``) or a server URI (``"http://host:19530"``).
        embedder: the :class:`kvmm.Embedder` that embeds images and queries.
        weights_label: how the weights are named in the model identity (defaults to
            ``model.weights_source``).
        token: server credentials, if any.

    Every row is keyed by the file's absolute path, with its size and mtime; the model
    identity (variant, weights, dim) is stored in a metadata collection and checked on every
    use: another model is refused with :class:`ModelMismatchError`.
    """

    def __init__(self, uri: str | os.PathLike, embedder, weights_label: str | None = None,
                 token: str = ""):
        pymilvus = _milvus()
        self.uri = str(uri)
        if "://" not in self.uri:
            path = Path(self.uri).expanduser()
            if path.suffix != ".db":
                raise KvmmError(f"A Milvus Lite database file must end with '.db', got {path}.")
            if not path.parent.is_dir():
                raise KvmmError(f"No such folder for the database: {path.parent}")
            self.uri = str(path.resolve())
        self.client = pymilvus.MilvusClient(self.uri, token=token)
        self.embedder = embedder
        self.identity = model_identity(embedder, weights_label)
        self._ensure_collections(pymilvus)
        self._check_identity()

    # -- schema ----------------------------------------------------------------------
    def _ensure_collections(self, pymilvus) -> None:
        DataType = pymilvus.DataType
        client = self.client
        if not client.has_collection(META):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("value", DataType.VARCHAR, max_length=4096)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
            params = client.prepare_index_params()
            params.add_index("vector", index_type="FLAT", metric_type="L2")
            client.create_collection(META, schema=schema, index_params=params)
        stored = self.stored_identity()
        if stored is None:
            client.upsert(META, [{"key": "model", "value": json.dumps(self.identity),
                                  "vector": [0.0, 0.0]}])
            stored = self.identity
        if not client.has_collection(IMAGES) and stored == self.identity:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("path", DataType.VARCHAR, is_primary=True, max_length=_MAX_PATH)
            schema.add_field("size", DataType.INT64)
            schema.add_field("mtime", DataType.DOUBLE)
            schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.identity["dim"])
            params = client.prepare_index_params()
            params.add_index("embedding", index_type="FLAT", metric_type="COSINE")
            client.create_collection(IMAGES, schema=schema, index_params=params)

    def stored_identity(self) -> dict | None:
        """The model identity recorded in the database (``None`` for a new one)."""
        rows = self.client.get(META, ids=["model"], output_fields=["value"])
        return json.loads(rows[0]["value"]) if rows else None

    def _check_identity(self) -> None:
        stored = self.stored_identity()
        if stored != self.identity:
            def describe(i):
                return f"{i['variant']} weights={i['weights']} dim={i['dim']}"
            raise ModelMismatchError(
                f"{self.uri} was indexed with {describe(stored)}, not {describe(self.identity)}; "
                f"use that model, or another database."
            )

    # -- contents --------------------------------------------------------------------
    def entries(self) -> dict[str, tuple[int, float]]:
        """``{path: (size, mtime)}`` of every indexed image."""
        out = {}
        # Milvus Lite logs a harmless warning on every iterator; keep stderr clean.
        logger = logging.getLogger("pymilvus")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            iterator = self.client.query_iterator(IMAGES, batch_size=1000, filter='path != ""',
                                                  output_fields=["path", "size", "mtime"])
            while True:
                rows = iterator.next()
                if not rows:
                    iterator.close()
                    break
                for row in rows:
                    out[row["path"]] = (int(row["size"]), float(row["mtime"]))
        finally:
            logger.setLevel(level)
        return out

    def __len__(self) -> int:
        return len(self.entries())

    def vectors(self, paths: list[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of ``paths`` (those indexed)."""
        rows = self.client.get(IMAGES, ids=list(paths), output_fields=["path", "embedding"])
        return {r["path"]: np.asarray(r["embedding"], "float32") for r in rows}

    # -- indexing --------------------------------------------------------------------
    @staticmethod
    def scan(folder: str | os.PathLike) -> dict[str, tuple[int, float]]:
        """``{absolute path: (size, mtime)}`` of the image files under ``folder`` (recursive)."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise KvmmError(f"No such folder: {folder}")
        found = {}
        for root, _dirs, files in os.walk(folder):
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    path = Path(root, name).resolve()
                    stat = path.stat()
                    found[str(path)] = (int(stat.st_size), float(stat.st_mtime))
        return found

    def index_folder(self, folder: str | os.PathLike, prune: bool = True) -> IndexReport:
        """Bring the index up to date with ``folder``: new and changed images (size or mtime
        differ) are embedded and upserted one batch at a time, unchanged ones are left alone,
        and (``prune``) indexed images under ``folder`` that are gone are removed.

        Each batch is committed as soon as it is embedded and rows are keyed by path, so an
        interrupted run loses at most the batch in flight, and running again finishes the
        job without duplicates. Unreadable images are reported in ``failed`` and skipped.
        """
        on_disk = self.scan(folder)
        root = str(Path(folder).expanduser().resolve())
        indexed = self.entries()
        report = IndexReport()
        if prune:
            gone = [p for p in indexed if p.startswith(root + os.sep) and p not in on_disk]
            if gone:
                self.client.delete(IMAGES, ids=gone)
            report.removed = len(gone)
        todo = [p for p, stat in on_disk.items() if indexed.get(p) != stat]
        report.unchanged = len(on_disk) - len(todo)
        for batch in self.embedder.iter_images(todo):
            rows = [
                {"path": p, "size": on_disk[p][0], "mtime": on_disk[p][1],
                 "embedding": vector.tolist()}
                for p, vector in zip(batch.items, batch.embeddings)
            ]
            if rows:
                self.client.upsert(IMAGES, rows)
            for p in batch.items:
                if p in indexed:
                    report.updated += 1
                else:
                    report.added += 1
            report.failed.extend(batch.failures)
        self.client.flush(IMAGES)
        return report

    # -- search ----------------------------------------------------------------------
    def search_vector(self, vector, k: int = 10) -> list[tuple[str, float]]:
        """``[(path, cosine similarity)]`` of the ``k`` nearest images, best first."""
        if int(k) < 1:
            raise KvmmError(f"k must be a positive integer, got {k}.")
        hits = self.client.search(IMAGES, data=[np.asarray(vector, "float32").tolist()],
                                  limit=int(k), output_fields=["path"],
                                  search_params={"metric_type": "COSINE"})
        return [(hit["entity"]["path"], float(hit["distance"])) for hit in hits[0]]

    def search_text(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        """Images nearest to ``text``."""
        return self.search_vector(self.embedder.encode_texts([text])[0], k)

    def search_image(self, image, k: int = 10) -> list[tuple[str, float]]:
        """Images nearest to ``image`` (a path, PIL image or array)."""
        vectors = self.embedder.encode_images([image])
        if not len(vectors):
            raise KvmmError(self.embedder.failures[0][1])
        return self.search_vector(vectors[0], k)

    def close(self) -> None:
        self.client.close()
