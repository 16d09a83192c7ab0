"""Which codec a ``lic`` command uses: the encoder's (--checkpoint, --compressai-checkpoint,
--model/--quality, --pretrained, the shipped default) and the decoder's (by the file's weight fingerprint)."""

from __future__ import annotations

import json
import os

from .errors import CliError


def _assets_dir() -> str:
    from ..default_model import default_model_path

    return os.path.dirname(default_model_path())


def _shipped_model_dirs() -> list[str]:
    """The default model first, then every other model directory under lic_jax/assets/models."""
    from ..default_model import default_model_path

    out = []
    d = default_model_path()
    if os.path.exists(os.path.join(d, "config.json")):
        out.append(os.path.realpath(d))
    root = _assets_dir()
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            p = os.path.realpath(os.path.join(root, name))
            if os.path.exists(os.path.join(p, "config.json")) and p not in out:
                out.append(p)
    return out


def _is_variable_rate_name(name) -> bool:
    from ..models.registry import is_variable_rate

    return isinstance(name, str) and is_variable_rate(name)


def _read_config(d: str) -> dict:
    try:
        with open(os.path.join(d, "config.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _codec_from_dir(path: str, coder, float_twin: bool = False):
    """The codec of a model directory; ``float_twin``: a portable model's float twin (same weights), which
    decodes the files written before the model was made portable (docs/FORMAT.md §7)."""
    import dataclasses

    from ..artifact import load_artifact
    from ..coding import Codec
    from ..models.portable import float_spec

    if os.path.isfile(path):
        raise CliError(f"{path} is a file; --checkpoint takes a lic_jax model directory "
                       f"(use --compressai-checkpoint for CompressAI .pth files)")
    art = load_artifact(path)
    if float_twin:
        art = dataclasses.replace(art, spec=float_spec(art.spec))
    return Codec.from_artifact(art, coder=coder)


def _float_twin_name(d: str):
    """The float model a shipped portable directory also serves (None for a float directory)."""
    from ..models.registry import REGISTRY

    rec = REGISTRY.get(_read_config(d).get("model", {}).get("name"))
    return rec.portable_of if rec is not None else None


def _codec_from_compressai(path: str, coder):
    from ..coding import Codec
    from ..convert import from_compressai

    model, spec, variables = from_compressai(path)
    return Codec(model, spec, variables, coder=coder)


def _codec_from_zoo(args, coder):
    """``--pretrained``: CompressAI's weights for --model / --quality (lic_jax.zoo; downloaded once)."""
    from .. import zoo
    from ..coding import Codec

    if args.checkpoint or args.compressai_checkpoint:
        raise CliError("--pretrained takes --model and --quality, not a checkpoint")
    if not args.model or args.quality is None:
        raise CliError(f"--pretrained needs --model NAME and --quality Q (NAME: {', '.join(zoo.pretrained_names())}; "
                       f"Q: 1-8)")
    return Codec.from_artifact(zoo.load_pretrained_artifact(args.model, args.quality, args.metric or "mse"),
                               coder=coder)


def _check_zoo_args(args):
    if args.metric and not args.pretrained:
        raise CliError("--metric needs --pretrained")
    if args.pretrained and (args.checkpoint or args.compressai_checkpoint):
        raise CliError("--pretrained cannot be combined with --checkpoint / --compressai-checkpoint")


def _zoo_codec_for_header(header, args):
    """A file's model among the cached pretrained models (by fingerprint, no network); with
    --pretrained, CompressAI's weights for the header's model and quality are fetched."""
    from .. import zoo
    from ..coding import Codec

    p = zoo.find_cached_artifact(header.fingerprint)
    if p is not None:
        return _codec_from_dir(p, None)
    if not args.pretrained or (header.model_name, "mse") not in zoo.PRETRAINED or not header.quality:
        return None
    for metric in [args.metric] if args.metric else list(zoo.METRICS):
        art = zoo.load_pretrained_artifact(header.model_name, header.quality, metric)
        if bytes.fromhex(art.fingerprint)[:8] == header.fingerprint:
            return Codec.from_artifact(art)
    return None


def _encoder_codec(args):
    coder = args.coder
    _check_zoo_args(args)
    if args.pretrained:
        return _codec_from_zoo(args, coder)
    if args.checkpoint:
        return _codec_from_dir(args.checkpoint, coder)
    if args.compressai_checkpoint:
        return _codec_from_compressai(args.compressai_checkpoint, coder)
    if args.model:  # (--quality alone sets the rate of the default model, a variable-rate one: compress.py)
        dirs = _shipped_model_dirs()
        if getattr(args, "qf", None) is not None:  # JPEG-payload models: the artifact trained nearest to --qf first
            def _qf_dist(d):
                m = _read_config(d).get("model", {})
                q = (m.get("hparams") or {}).get("payload_quality")
                return abs(q - args.qf) if m.get("name") == args.model and isinstance(q, int) else 0
            dirs = sorted(dirs, key=_qf_dist)
        for d in dirs:
            m = _read_config(d).get("model", {})
            variable = _is_variable_rate_name(m.get("name"))  # its --quality is a λ (compress.py)
            if args.quality is not None and not variable and m.get("quality") != args.quality:
                continue
            if m.get("name") == args.model:
                return _codec_from_dir(d, coder)
            if _float_twin_name(d) == args.model:  # a portable directory serves its float twin too (same weights)
                return _codec_from_dir(d, coder, float_twin=not getattr(args, "portable", False))
        from ..models import MODELS

        if args.model not in MODELS:
            raise CliError(f"unknown model {args.model!r}; available: {', '.join(sorted(MODELS))}")
        q = f" quality {args.quality}" if args.quality is not None else ""
        raise CliError(f"no shipped weights for {args.model}{q}; add --pretrained (CompressAI's weights, downloaded "
                       f"once), or pass --checkpoint DIR (a lic_jax model directory) or --compressai-checkpoint FILE")
    from ..default_model import default_model_path

    d = default_model_path()
    if not os.path.exists(os.path.join(d, "config.json")):
        raise CliError(f"no default model is shipped (expected at {d}); pass --checkpoint DIR or "
                       f"--compressai-checkpoint FILE")
    return _codec_from_dir(d, coder)


class _DecoderModels:
    """Finds (and caches) the codec whose weight fingerprint matches a file's header."""

    def __init__(self, args):
        self.args = args
        self.cache: dict[tuple, object] = {}
        self.explicit: dict[bool, object] = {}  # float twin? → the --checkpoint codec
        _check_zoo_args(args)

    def for_header(self, header):
        from ..coding import ModelMismatchError

        fp = header.fingerprint
        key = (fp, header.model_id)  # a portable model and its float twin share the weights' fingerprint
        if key in self.cache:
            return self.cache[key]
        a = self.args
        if a.checkpoint or a.compressai_checkpoint:
            twin = bool(a.checkpoint) and _float_twin_name(a.checkpoint) == header.model_name
            if twin not in self.explicit:
                self.explicit[twin] = (_codec_from_dir(a.checkpoint, None, float_twin=twin) if a.checkpoint
                                       else _codec_from_compressai(a.compressai_checkpoint, None))
            codec = self.explicit[twin]
            if codec.fingerprint8 != fp:
                raise ModelMismatchError(
                    f"the file was encoded with other weights ({header.model_name}, fingerprint {fp.hex()}) "
                    f"than the given checkpoint (fingerprint {codec.fingerprint8.hex()})"
                )
        else:
            codec = None
            for d in _shipped_model_dirs():
                if bytes.fromhex(_read_config(d).get("fingerprint", "")[:16] or "00")[:8] == fp:
                    # a portable directory also decodes its float twin's files (same weights)
                    codec = _codec_from_dir(d, None, float_twin=_float_twin_name(d) == header.model_name)
                    break
            if codec is None:
                codec = _zoo_codec_for_header(header, a)
            if codec is None:
                raise ModelMismatchError(
                    f"no shipped model has the file's weight fingerprint {fp.hex()} ({header.model_name}"
                    f"{' q' + str(header.quality) if header.quality else ''}), nor a "
                    f"{'' if a.pretrained else 'cached '}pretrained one; pass --checkpoint DIR with the encoder's weights"
                    f"{'' if a.pretrained else ' (or --pretrained if it was made with CompressAI weights)'}"
                )
        self.cache[key] = codec
        return codec
