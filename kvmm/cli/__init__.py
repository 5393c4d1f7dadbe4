"""The ``kvmm`` command: list models, classify, embed, convert, index and search images.

Exit codes: 0 success; 1 failure while running; 2 bad input (usage, missing file, unknown
model or weights, empty label list); 3 the index was built with another model; 4 an
optional package is missing. Errors are one ``error: ...`` line on stderr (set
``KVMM_DEBUG=1`` for the traceback). See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_MISMATCH, EXIT_MISSING_PACKAGE = 0, 1, 2, 3, 4

#: Extra model families (tests register tiny ones here).
EXTRA_FAMILIES: list = []

EPILOG = """examples:
  kvmm list
  kvmm classify cat.jpg dog.jpg --labels cat dog --template "a photo of a {}"
  kvmm classify shape.png --labels "a red circle" "a blue square" --model SigLIPDemo --weights shapes
  kvmm embed photos/ --out vectors.npy
  kvmm convert SigLIPBaseP16 --weights google_224 --out base224.weights.h5 --verify
  kvmm index ~/Pictures --db photos.db
  kvmm search "a dog on the beach" --db photos.db -k 5
  kvmm search --image query.jpg --db photos.db --json

exit codes: 0 ok, 1 failure, 2 bad input, 3 index built with another model,
4 optional package missing (pip install kvmm[search])
"""


class UsageError(Exception):
    """Bad input from the command line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------
#: The model used without --model: Google's SigLIP Base/16 (a real photo model; the shipped
#: demo model only knows synthetic shapes, and is one flag away: --model SigLIPDemo).
DEFAULT_MODEL = ("SigLIPBaseP16", "google_224")
OFFLINE_HINT = (" Without network access, pass local weights (--weights FOLDER_OR_FILE) or try "
                "the shipped demo model: --model SigLIPDemo --weights shapes.")


def _weights_label(weights: str) -> str:
    """How ``--weights`` is recorded: local files as absolute paths, names as given."""
    path = Path(os.path.expanduser(weights))
    return str(path.resolve()) if path.exists() else weights


def load_model(variant: str | None, weights: str | None, vocabulary: str | None = None):
    """``(model, processor, weights label)`` for ``--model`` / ``--weights`` / ``--vocabulary``."""
    from kvmm.cli.convert import family_of
    from kvmm.embedder import processor_for
    from kvmm.loading import create_model

    from kvmm.errors import HubUnavailableError

    default_variant, default_weights = DEFAULT_MODEL
    variant = variant or default_variant
    family = family_of(variant, EXTRA_FAMILIES)
    if weights is None:
        named = family.weights.get(variant, {})
        weights = default_weights if default_weights in named else next(iter(named), None)
        if weights is None:
            raise UsageError(f"{variant} has no named weights; pass --weights FILE_OR_FOLDER.")
    try:
        model = create_model(family, variant, weights=weights)
    except HubUnavailableError as exc:
        raise HubUnavailableError(str(exc) + OFFLINE_HINT) from exc
    path = Path(os.path.expanduser(weights))
    if vocabulary:
        if not Path(vocabulary).exists():
            raise UsageError(f"No such vocabulary file or folder: {vocabulary}")
        model.vocabulary_path = str(Path(vocabulary).resolve())
    elif path.is_file() and not getattr(model, "vocabulary_path", None):
        model.vocabulary_path = str(path.resolve().parent)  # a .weights.h5 next to its vocabulary
    return model, processor_for(model), _weights_label(weights)


def _embedder(args):
    from kvmm.embedder import Embedder

    model, processor, label = load_model(args.model, args.weights, args.vocabulary)
    progress = None if not args.no_progress else False
    return Embedder(model, processor, batch_size=args.batch_size, progress=progress), label


def _check_files(paths) -> list[str]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"No such file: {missing[0]}")
    return [str(p) for p in paths]


def _expand(paths) -> list[str]:
    """Files as given; folders expanded to the images inside (recursive, sorted)."""
    from kvmm.search.index import IMAGE_EXTENSIONS

    out = []
    for p in _check_files(paths):
        if Path(p).is_dir():
            out += sorted(
                str(f) for f in Path(p).rglob("*") if f.name.lower().endswith(IMAGE_EXTENSIONS)
            )
        else:
            out.append(p)
    return out


def _report_failures(failures) -> None:
    for _item, message in failures:
        print(f"warning: skipped {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from kvmm.cli.convert import families
    from kvmm.loading import cache_dir

    catalog = []
    for family in [*EXTRA_FAMILIES, *families()]:
        for variant in family.variants:
            named = family.weights.get(variant, {})
            catalog.append({"family": family.name, "variant": variant,
                            "weights": {n: w.repo_id for n, w in named.items()}})
    kvmm_cache = cache_dir()
    from kvmm.loading import CACHE_SUFFIX

    cached = sorted(str(p) for p in kvmm_cache.rglob(f"*{CACHE_SUFFIX}")) if kvmm_cache and kvmm_cache.is_dir() else []
    hub = []
    try:
        from huggingface_hub import scan_cache_dir

        repos = {w for entry in catalog for w in entry["weights"].values()}
        hub = sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_id in repos)
    except Exception:  # noqa: BLE001 - no Hugging Face cache yet
        pass
    if args.json:
        print(json.dumps({"models": catalog, "kvmm_cache": str(kvmm_cache) if kvmm_cache else None,
                          "converted": cached, "hf_cache": hub}, indent=2))
        return EXIT_OK
    print("Models (variant: named weights -> Hugging Face checkpoint)")
    for entry in catalog:
        print(f"  {entry['family']:<10} {entry['variant']}")
        for name, repo in entry["weights"].items():
            mark = "  [downloaded]" if repo in hub else ""
            print(f"      {name:<26} {repo}{mark}")
    print(f"\nConverted weights in {kvmm_cache or 'KVMM_CACHE=off'}: {len(cached)}")
    for path in cached:
        print(f"  {path}")
    return EXIT_OK


def cmd_classify(args) -> int:
    labels = [label for label in (args.labels or []) if label.strip()]
    if not labels:
        raise UsageError("--labels needs at least one non-empty label.")
    paths = _check_files(args.images)
    model, processor, _ = load_model(args.model, args.weights, args.vocabulary)
    try:
        from kvmm.zero_shot import ZeroShotClassifier
    except ImportError as exc:
        raise RuntimeError("kvmm.zero_shot is not available in this installation.") from exc
    from kvmm.utils.images import load_image

    templates = args.template or None
    classifier = ZeroShotClassifier(model, labels, templates=templates, processor=processor)
    images = [load_image(p) for p in paths]
    import numpy as np

    probs = np.asarray(classifier.predict_proba(images))
    results = []
    for path, row in zip(paths, probs):
        order = np.argsort(-row)
        results.append({"image": path, "label": labels[order[0]],
                        "scores": {labels[i]: float(row[i]) for i in order}})
    if args.json:
        print(json.dumps(results, indent=2))
        return EXIT_OK
    for result in results:
        print(result["image"])
        for label, score in list(result["scores"].items())[: args.top]:
            print(f"  {score:7.3f}  {label}")
    return EXIT_OK


def cmd_embed(args) -> int:
    import numpy as np

    out = Path(args.out)
    kinds = (".npy", ".parquet", ".jsonl")
    if not out.name.endswith(kinds):
        raise UsageError(f"--out must end with one of {', '.join(kinds)}, got {out.name!r}.")
    if not out.parent.is_dir():
        raise UsageError(f"No such folder for --out: {out.parent}")
    if args.text:
        items = list(args.paths)
        embedder, _ = _embedder(args)
        vectors = embedder.encode_texts(items)
        kept = items
    else:
        items = _expand(args.paths)
        if not items:
            raise UsageError("No images found in the given paths.")
        embedder, _ = _embedder(args)
        kept, parts = [], []
        for batch in embedder.iter_images(items):
            kept += batch.items
            parts.append(batch.embeddings)
        vectors = np.concatenate(parts)
        _report_failures(embedder.failures)
    tmp = out.with_name(out.name + ".partial")
    if out.name.endswith(".npy"):
        with open(tmp, "wb") as f:
            np.save(f, vectors)
        out.with_name(out.name[:-4] + ".paths.txt").write_text("".join(f"{k}\n" for k in kept))
    elif out.name.endswith(".jsonl"):
        with open(tmp, "w") as f:
            for key, vector in zip(kept, vectors):
                f.write(json.dumps({"text" if args.text else "path": key,
                                    "embedding": vector.tolist()}) + "\n")
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ModuleNotFoundError("Writing .parquet needs pyarrow: pip install pyarrow") from exc
        table = pa.table({"text" if args.text else "path": kept,
                          "embedding": pa.array(list(vectors), pa.list_(pa.float32()))})
        pq.write_table(table, tmp)
    os.replace(tmp, out)
    summary = {"out": str(out), "count": len(kept), "dim": int(vectors.shape[1]),
               "skipped": [m for _, m in getattr(embedder, "failures", [])]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"Wrote {len(kept)} embeddings of size {vectors.shape[1]} to {out}"
              + (f" ({len(summary['skipped'])} skipped)" if summary["skipped"] else ""))
    return EXIT_OK


def cmd_convert(args) -> int:
    from kvmm.cli.convert import convert, family_of

    family = family_of(args.variant, EXTRA_FAMILIES)
    input_shape = None
    if args.input_shape:
        size = args.input_shape * 2 if len(args.input_shape) == 1 else args.input_shape[:2]
        input_shape = (size[0], size[1], 3)
    lines = []
    report = convert(args.variant, args.weights, args.out, input_shape, args.verify,
                     args.tolerance, family=family, log=lines.append)
    if args.json:
        print(json.dumps({"out": str(args.out), "verification": report}))
    else:
        print("\n".join(lines))
    return EXIT_OK


def _open_index(args):
    from kvmm.search import ImageIndex

    if bool(args.db) == bool(args.uri):
        raise UsageError("Give exactly one of --db FILE or --uri URI.")
    embedder, label = _embedder(args)
    return ImageIndex(args.db or args.uri, embedder, weights_label=label, token=args.token or "")


def cmd_index(args) -> int:
    if not Path(args.folder).is_dir():
        raise UsageError(f"No such folder: {args.folder}")
    index = _open_index(args)
    try:
        report = index.index_folder(args.folder, prune=not args.keep_deleted)
        total = len(index)
    finally:
        index.close()
    _report_failures(report.failed)
    if args.json:
        print(json.dumps({**report.as_dict(), "failed": [m for _, m in report.failed],
                          "total": total}))
    else:
        print(f"Indexed {args.folder}: {report.added} added, {report.updated} updated, "
              f"{report.unchanged} unchanged, {report.removed} removed, "
              f"{len(report.failed)} unreadable; {total} images in the index.")
    return EXIT_OK


def cmd_search(args) -> int:
    if (args.text is None) == (args.image is None):
        raise UsageError("Give a TEXT query or --image PATH (one of them).")
    if args.image is not None:
        _check_files([args.image])
    if args.db and not Path(args.db).exists():
        raise UsageError(f"No such database: {args.db} (build it with kvmm index)")
    index = _open_index(args)
    try:
        if args.image is not None:
            hits = index.search_image(args.image, k=args.k)
        else:
            hits = index.search_text(args.text, k=args.k)
    finally:
        index.close()
    if args.json:
        print(json.dumps([{"path": p, "score": s} for p, s in hits]))
    else:
        for path, score in hits:
            print(f"{score:7.3f}  {path}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kvmm", description="Keras vision-language models from the command line.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_options(p):
        p.add_argument("--model", help="variant (kvmm list); default SigLIPBaseP16 (google_224); "
                                        "SigLIPDemo --weights shapes works offline")
        p.add_argument("--weights", help="named weight, .weights.h5 file, checkpoint folder or hf:<repo>")
        p.add_argument("--vocabulary", help="tokenizer vocabulary file/folder (if not next to the weights)")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def command(name, helptext, example):
        return sub.add_parser(name, help=helptext, description=helptext,
                              epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("list", "variants, named weights and what is cached", "kvmm list --json")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_list)

    p = command("classify", "zero-shot classification of images",
                'kvmm classify a.jpg --labels cat dog --template "a photo of a {}"')
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--labels", nargs="*", required=True)
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable)")
    p.add_argument("--top", type=int, default=5, help="labels shown per image")
    model_options(p)
    p.set_defaults(run=cmd_classify)

    p = command("embed", "embeddings of images (files or folders) or texts",
                "kvmm embed photos/ --out vectors.parquet")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, help=".npy (+ .paths.txt), .parquet or .jsonl")
    p.add_argument("--text", action="store_true", help="PATHs are texts to embed")
    model_options(p)
    p.set_defaults(run=cmd_embed)

    p = command("convert", "checkpoint -> .weights.h5 (optionally verified)",
                "kvmm convert SigLIPBaseP16 --weights google_224 --out b.weights.h5 --verify")
    p.add_argument("variant")
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input-shape", type=int, nargs="+", metavar="SIZE")
    p.add_argument("--verify", action="store_true", help="compare with transformers")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_convert)

    def db_options(p):
        p.add_argument("--db", help="Milvus Lite database file (.db)")
        p.add_argument("--uri", help="Milvus server URI, e.g. http://localhost:19530")
        p.add_argument("--token", help="Milvus server token")

    p = command("index", "index a folder of images (incremental)", "kvmm index ~/Pictures --db photos.db")
    p.add_argument("folder")
    p.add_argument("--keep-deleted", action="store_true", help="keep entries of deleted files")
    db_options(p)
    model_options(p)
    p.set_defaults(run=cmd_index)

    p = command("search", "search an index by text or by image", 'kvmm search "a red circle" --db photos.db -k 5')
    p.add_argument("text", nargs="?")
    p.add_argument("--image")
    p.add_argument("-k", type=int, default=10)
    db_options(p)
    model_options(p)
    p.set_defaults(run=cmd_search)
    return parser


def _exit_code(exc: BaseException) -> int:
    from kvmm.errors import KvmmError, WeightsError

    try:
        from kvmm.search.index import ModelMismatchError
    except ImportError:  # pragma: no cover
        ModelMismatchError = ()
    if isinstance(exc, ModelMismatchError):
        return EXIT_MISMATCH
    if isinstance(exc, ModuleNotFoundError) or "pip install" in str(exc):
        return EXIT_MISSING_PACKAGE
    if isinstance(exc, (UsageError, WeightsError, FileNotFoundError)):
        return EXIT_USAGE
    if isinstance(exc, KvmmError) and str(exc).startswith(("Unknown model", "No such")):
        return EXIT_USAGE
    return EXIT_FAILURE


def main(argv=None) -> int:
    """Run the ``kvmm`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, no traceback
        if os.environ.get("KVMM_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
