"""Paper tier: the official EDM2 networks (NVlabs/edm2 post-hoc EMA reconstructions) for
autoguidance, as named by the Table 1 presets (reference/autoguidance.md §5, §7).

The official files are Python pickles whose ``['ema']`` entry is the network object; unpickling
them *executes code* named inside the file (class constructors from the edm2 repository's
``training``/``torch_utils`` modules). The project loads plain tensors with
``torch.load(weights_only=True)`` everywhere else; these files cannot be loaded that way, so they are
refused unless the config says ``autoguidance.edm2.trust_pickle: true`` (use it only for files
from a source you trust, e.g. checked against published hashes).

Checks, in the order a run meets them (each a one-line ReproError naming the key or file):
the preset exists; ``trust_pickle`` is set; ``model_dir`` holds ``<net>.pkl`` and ``<gnet>.pkl``;
``code_dir`` is a clone of NVlabs/edm2 (the pickles import its modules).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from guidance_repro.errors import ReproError

KEY = "autoguidance.edm2"


def preset(cfg: dict) -> dict:
    presets = cfg.get("presets") or {}
    name = cfg.get("preset")
    if name not in presets:
        raise ReproError(f"{KEY}.preset: {name!r} is not in {KEY}.presets "
                         f"(known: {', '.join(sorted(presets)) or 'none'})")
    return presets[name]


def pickle_paths(cfg: dict) -> dict[str, Path]:
    p = preset(cfg)
    if not cfg.get("model_dir"):
        raise ReproError(f"{KEY}.model_dir: not set (a local folder with {p['net']}.pkl and "
                         f"{p['gnet']}.pkl; nothing is downloaded at run time)")
    root = Path(cfg["model_dir"])
    return {"net": root / f"{p['net']}.pkl", "gnet": root / f"{p['gnet']}.pkl"}


def require_trust(cfg: dict) -> None:
    if cfg.get("trust_pickle") is not True:
        raise ReproError(f"{KEY}.trust_pickle: loading the EDM2 network pickles runs code stored in "
                         f"the files; set it to true only for files you trust")


def check_preset_files(cfg: dict) -> dict:
    """Everything a paper-tier run needs, checked up front; returns what was found."""
    p = preset(cfg)
    require_trust(cfg)
    paths = pickle_paths(cfg)
    for role, path in paths.items():
        if not path.is_file():
            raise ReproError(f"{path}: EDM2 {role} pickle not found ({KEY}.model_dir; the preset "
                             f"{cfg.get('preset')} names {path.name})")
    code = cfg.get("code_dir")
    if not code or not (Path(code) / "training" / "networks_edm2.py").is_file():
        raise ReproError(f"{KEY}.code_dir: {code!r} is not a clone of NVlabs/edm2 "
                         f"(training/networks_edm2.py missing); the pickles import its modules")
    return {"preset": cfg.get("preset"), "guidance": p["guidance"],
            "files": {k: str(v) for k, v in paths.items()}, "code_dir": str(code)}


def load_network(path: str | Path, cfg: dict):
    """The ``['ema']`` network of an official pickle. Refuses without ``trust_pickle: true``."""
    require_trust(cfg)
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"{path}: EDM2 pickle not found ({KEY}.model_dir)")
    code = cfg.get("code_dir")
    if code and str(code) not in sys.path:
        sys.path.insert(0, str(code))
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 - allowed only with trust_pickle (checked above)
    except ModuleNotFoundError as exc:
        raise ReproError(f"{path}: the pickle needs module {exc.name!r} from NVlabs/edm2 "
                         f"(set {KEY}.code_dir to a clone)") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise ReproError(f"{path}: not a readable pickle ({exc})") from None
    if not isinstance(obj, dict) or "ema" not in obj:
        raise ReproError(f"{path}: expected a dict with an 'ema' network (edm2 post-hoc EMA pickle)")
    return obj["ema"]


def as_denoiser(net, num_classes: int = 1000):
    """Adapt an EDM2 network (``net(x, sigma, class_labels)`` with one-hot labels, None when
    unconditional) to the sampler's ``denoiser(x, sigma, labels)`` with integer labels; the
    output is cast to float32 as edm2's sampler does."""
    import torch

    def denoise(x, sigma, labels):
        onehot = None
        if labels is not None and getattr(net, "label_dim", num_classes):
            onehot = torch.nn.functional.one_hot(labels, num_classes).to(x.dtype)
        return net(x, sigma.expand(x.shape[0]), onehot).to(torch.float32)

    return denoise
