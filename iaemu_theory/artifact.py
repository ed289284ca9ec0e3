"""The emulator artifact: one file with everything needed to predict, safe to load.

The file is `torch.save` of a plain dict (tensors, strings, numbers) and is read with
`torch.load(weights_only=True)`, so no pickled code can run. An artifact holds one network or an ensemble of
several trained alike (same network, dataset and standardisation), whose predictions the emulator averages.
Layout (FORMAT_VERSION 2; version 1 files, with one `state_dict` in place of `members`, are read too):

  format            "iaemu-emulator-artifact"
  format_version    int
  members           [{name: tensor}, ...]  IAEmuNetwork weights and BatchNorm statistics, one dict per network
  weights_sha256    str                    digest of the members (`members_digest`)
  input_mean/std    float64 (7,)           z-scoring of the encoded parameters, PARAM_NAMES order
  output_mean/scale float64 (n_stat,)      one mean and one scale per statistic (xi in ln xi)
  bin_edges         float64 (n_bins + 1,)  Mpc/h
  metadata_json     str (JSON)             param_names, statistics, transforms, input_encoding (absent:
                                           "identity"), network config, domain,
                                           dataset hash, metrics, training record, library versions
"""
from __future__ import annotations

import hashlib
import json
import pickle
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .conventions import ALIGNMENT_COLUMNS, BIN_EDGES, PARAM_NAMES, STATISTICS
from .domain import Domain
from .fileio import atomic_path
from .network import IAEmuNetwork, NetworkConfig

FORMAT_NAME = "iaemu-emulator-artifact"
FORMAT_VERSION = 2
#: Format versions this iaemu reads: 1 holds a single `state_dict`, 2 a list of `members`.
READABLE_VERSIONS = (1, 2)
#: How each statistic is transformed before z-scoring (and back-transformed by the emulator).
TRANSFORMS = {"xi": "ln", "omega": "identity", "eta": "identity"}
#: How the parameters enter the network before z-scoring. "alignment_p2": mu_cen and mu_sat become
#: mean_p2(mu) (iaemu_theory.alignment), in which the expected omega is linear and eta quadratic.
INPUT_ENCODINGS = ("identity", "alignment_p2")
#: Output forms that need a particular input encoding: the alignment form's polynomials are exact in mean_p2(mu).
REQUIRED_ENCODING = {"alignment": "alignment_p2"}
#: Where the package's trained emulator lives.
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "iaemu_default.pt"


class ArtifactError(ValueError):
    """An artifact file that is corrupt, truncated, tampered with or incompatible."""


@dataclass
class Artifact:
    """In-memory form of an artifact file."""

    config: NetworkConfig
    members: list[dict[str, torch.Tensor]]      # one state dict per network of the ensemble (usually one)
    input_mean: np.ndarray
    input_std: np.ndarray
    output_mean: np.ndarray
    output_scale: np.ndarray
    bin_edges: np.ndarray = field(default_factory=lambda: np.array(BIN_EDGES))
    domain: dict = field(default_factory=lambda: Domain().to_dict())
    dataset_hash: str | None = None
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    weights_sha256: str | None = None
    path: Path | None = None
    input_encoding: str = "identity"

    @property
    def statistics(self) -> tuple[str, ...]:
        return tuple(self.config.statistics)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of a single-network artifact; ArtifactError for an ensemble (use `members`)."""
        if len(self.members) != 1:
            raise ArtifactError(f"artifact {self.path or ''} is an ensemble of {len(self.members)} networks; this "
                                f"step takes a single trained network (one member's artifact)")
        return self.members[0]

    def metadata(self) -> dict:
        """The JSON-able part of the artifact."""
        return {
            "param_names": list(PARAM_NAMES),
            "statistics": list(self.statistics),
            "transforms": {s: TRANSFORMS[s] for s in self.statistics},
            "input_encoding": self.input_encoding,
            "network_config": self.config.to_dict(),
            "members": self.n_members,
            "domain": self.domain,
            "dataset_hash": self.dataset_hash,
            "metrics": self.metrics,
            "training": self.training,
            "versions": self.versions or library_versions(),
        }

    def build_network(self) -> IAEmuNetwork:
        """The network of a single-network artifact, in eval mode, on the CPU in float32."""
        return self._network(self.state_dict)

    def build_networks(self) -> list[IAEmuNetwork]:
        """Every member's network, in eval mode, on the CPU in float32."""
        return [self._network(state) for state in self.members]

    def _network(self, state: dict[str, torch.Tensor]) -> IAEmuNetwork:
        net = IAEmuNetwork(self.config)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ArtifactError(f"artifact {self.path or ''}: weights do not fit the stored network config "
                                f"{self.config.to_dict()}: {err}") from None
        return net.eval()


def library_versions() -> dict:
    from . import __version__
    return {"iaemu": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def members_digest(members: list[dict[str, torch.Tensor]]) -> str:
    """The digest of an artifact's weights: `weights_digest` of its network, or for an ensemble the sha256 of
    the members' digests in order."""
    if len(members) == 1:
        return weights_digest(members[0])
    return hashlib.sha256("".join(weights_digest(m) for m in members).encode()).hexdigest()


def save_artifact(path, art: Artifact) -> Path:
    """Write atomically (temporary file + rename). Returns the path."""
    path = Path(path)
    if not art.members:
        raise ValueError("an artifact needs at least one network")
    members = [{k: v.detach().to("cpu").clone() for k, v in m.items()} for m in art.members]
    art.weights_sha256 = members_digest(members)
    f64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    blob = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "members": members,
        "weights_sha256": art.weights_sha256,
        "input_mean": f64(art.input_mean),
        "input_std": f64(art.input_std),
        "output_mean": f64(art.output_mean),
        "output_scale": f64(art.output_scale),
        "bin_edges": f64(art.bin_edges),
        "metadata_json": json.dumps(art.metadata(), sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    art.path = path
    return path


def load_artifact(path) -> Artifact:
    """Read and check an artifact file; raise FileNotFoundError or ArtifactError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"emulator artifact {path} does not exist")
    _check_container(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ArtifactError(f"refusing artifact {path}: it holds pickled objects other than tensors, numbers, "
                            f"strings and containers, which an IAEmu artifact never does (written by other "
                            f"software, or tampered with); nothing in it was run") from None
    except Exception as err:        # torch raises many kinds for a damaged archive
        raise ArtifactError(f"artifact {path} is corrupt and cannot be read ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else 'no details'})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path} is not an IAEmu emulator artifact (no format={FORMAT_NAME!r} entry)")
    version = blob.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ArtifactError(f"artifact {path} has format_version {version!r}; this iaemu reads versions "
                            f"{list(READABLE_VERSIONS)} (retrain the emulator or install the matching iaemu)")
    weights_key = "state_dict" if version == 1 else "members"
    required = (weights_key, "weights_sha256", "input_mean", "input_std", "output_mean", "output_scale",
                "bin_edges", "metadata_json")
    missing = [k for k in required if k not in blob]
    if missing:
        raise ArtifactError(f"artifact {path} lacks entries {missing}")
    try:
        meta = json.loads(blob["metadata_json"])
    except (TypeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"artifact {path}: metadata_json is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"artifact {path}: metadata_json holds a {type(meta).__name__}, expected a JSON object")
    if tuple(meta.get("param_names", ())) != PARAM_NAMES:
        raise ArtifactError(f"artifact {path} was trained on parameters {meta.get('param_names')}; "
                            f"this iaemu expects {list(PARAM_NAMES)} in that order")
    stats = tuple(meta.get("statistics", ()))
    if not stats or any(s not in STATISTICS for s in stats):
        raise ArtifactError(f"artifact {path} lists statistics {list(stats)}; expected a subset of {list(STATISTICS)}")
    for s in stats:
        if meta.get("transforms", {}).get(s) != TRANSFORMS[s]:
            raise ArtifactError(f"artifact {path}: statistic {s} uses transform {meta.get('transforms', {}).get(s)!r}, "
                                f"expected {TRANSFORMS[s]!r}")
    encoding = meta.get("input_encoding", "identity")
    if encoding not in INPUT_ENCODINGS:
        raise ArtifactError(f"artifact {path}: input_encoding {encoding!r}; this iaemu knows {list(INPUT_ENCODINGS)}")
    try:
        config = NetworkConfig.from_dict(meta["network_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"artifact {path}: invalid network config ({err})") from None
    try:
        check_output_form(config.output_form, encoding)
    except ValueError as err:
        raise ArtifactError(f"artifact {path}: {err}") from None
    if tuple(config.statistics) != stats:
        raise ArtifactError(f"artifact {path}: network decoders {config.statistics} differ from statistics {stats}")
    members = [blob["state_dict"]] if version == 1 else blob["members"]
    if not isinstance(members, list) or not members:
        raise ArtifactError(f"artifact {path}: members is not a non-empty list of networks")
    for state in members:
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ArtifactError(f"artifact {path}: {weights_key} is not a mapping of tensors (one per network)")
    digest = members_digest(members)
    if digest != blob["weights_sha256"]:
        raise ArtifactError(f"artifact {path}: weights do not match their stored sha256 "
                            f"({digest[:12]}... vs {str(blob['weights_sha256'])[:12]}...): the file was modified or is corrupt")
    arr = lambda k: np.asarray(blob[k].numpy() if isinstance(blob[k], torch.Tensor) else blob[k], dtype=np.float64)  # noqa: E731
    shapes = {"input_mean": (len(PARAM_NAMES),), "input_std": (len(PARAM_NAMES),), "output_mean": (len(stats),),
              "output_scale": (len(stats),), "bin_edges": (config.n_bins + 1,)}
    values = {}
    for key, shape in shapes.items():
        values[key] = arr(key)
        if values[key].shape != shape:
            raise ArtifactError(f"artifact {path}: {key} has shape {values[key].shape}, expected {shape}")
        if not np.all(np.isfinite(values[key])):
            raise ArtifactError(f"artifact {path}: {key} has non-finite values")
    if np.any(values["input_std"] <= 0) or np.any(values["output_scale"] <= 0):
        raise ArtifactError(f"artifact {path}: scaler widths must be positive")
    edges = values["bin_edges"]
    if not (edges[0] > 0 and np.all(np.diff(edges) > 0)):
        raise ArtifactError(f"artifact {path}: bin_edges must be positive and strictly increasing, got "
                            f"{np.round(edges, 4).tolist()}")
    bad = [k for state in members for k, v in state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ArtifactError(f"artifact {path}: non-finite weights in {bad[:3]}{' ...' if len(bad) > 3 else ''}")
    if not isinstance(meta.get("domain"), dict):
        raise ArtifactError(f"artifact {path}: no training domain in its metadata (the region where its "
                            f"predictions hold); retrain it, or write one with iaemu_theory.domain.Domain.to_dict")
    try:
        Domain.from_dict(meta["domain"])
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"artifact {path}: invalid training domain in its metadata ({type(err).__name__}: "
                            f"{err})") from None
    art = Artifact(config=config, members=members, input_mean=values["input_mean"], input_std=values["input_std"],
                   output_mean=values["output_mean"], output_scale=values["output_scale"],
                   bin_edges=values["bin_edges"], domain=meta["domain"],
                   dataset_hash=meta.get("dataset_hash"), metrics=meta.get("metrics") or {},
                   training=meta.get("training") or {}, versions=meta.get("versions") or {},
                   weights_sha256=blob["weights_sha256"], path=path, input_encoding=encoding)
    art.build_networks()    # shape check of every weight against the config
    return art


#: The first bytes of a zip archive (torch.save's format) and of an empty one.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_container(path: Path) -> None:
    """Say what a file is when it is not a complete torch zip archive: empty, text, truncated, or other."""
    size = path.stat().st_size
    if size == 0:
        raise ArtifactError(f"artifact {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if zipfile.is_zipfile(path):
        return
    if head.startswith(_ZIP_MAGIC):
        raise ArtifactError(f"artifact {path} is a truncated or damaged archive ({size} bytes, no zip directory "
                            f"at its end): copy or download it again")
    try:
        head.decode("utf-8")
        kind = "a text file"
    except UnicodeDecodeError:
        kind = "a binary file of an unknown format"
    raise ArtifactError(f"{path} is {kind}, not an IAEmu emulator artifact (a torch zip archive written by "
                        f"iaemu-train)")


def check_output_form(output_form: str, encoding: str) -> None:
    """Raise ValueError when a network output form cannot be used with an input encoding."""
    needed = REQUIRED_ENCODING.get(output_form)
    if needed is not None and encoding != needed:
        raise ValueError(f"output_form {output_form!r} needs input_encoding {needed!r} (its polynomials are exact "
                         f"in mean_p2(mu), not in mu), not {encoding!r}")


def encode_params(x, encoding: str):
    """Parameters (torch tensor (n, 7), PARAM_NAMES order) as the network sees them before z-scoring;
    differentiable. The one implementation used by training and prediction."""
    if encoding == "identity":
        return x
    if encoding == "alignment_p2":
        from .alignment import mean_p2_torch

        columns = torch.tensor(ALIGNMENT_COLUMNS, device=x.device)
        return x.index_copy(1, columns, mean_p2_torch(x.index_select(1, columns)))
    raise ValueError(f"input_encoding {encoding!r}; expected one of {list(INPUT_ENCODINGS)}")


#: Rough physical scalers for an untrained artifact (ln xi, omega, eta), so its outputs look like the real ones.
_RANDOM_OUTPUT_SCALERS = {"xi": (1.0, 2.5), "omega": (0.05, 0.1), "eta": (0.01, 0.03)}


def make_random_artifact(path, tiny: bool = False, domain: Domain | None = None, seed: int = 0,
                         statistics=STATISTICS, input_encoding: str = "identity", output_form: str = "free",
                         members: int = 1) -> Path:
    """An untrained but valid artifact (for tests of code built on the emulator); `members` > 1 makes an
    ensemble of networks initialised from seeds seed, seed + 1, ..."""
    domain = domain or Domain()
    cfg = NetworkConfig.tiny() if tiny else NetworkConfig.paper()
    cfg = NetworkConfig.from_dict({**cfg.to_dict(), "statistics": list(statistics), "output_form": output_form})
    states = []
    for member_seed in range(seed, seed + members):
        gen = torch.Generator().manual_seed(member_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            net = IAEmuNetwork(cfg)
            for dec in net.decoders.values():   # a variance head that varies with the input, as a trained one does
                with torch.no_grad():
                    dec.out.weight[dec.n_mean:].normal_(0.0, 0.05, generator=gen)
        states.append(net.state_dict())
    box = domain.box()
    corners = torch.tensor([[box[n][0] for n in PARAM_NAMES], [box[n][1] for n in PARAM_NAMES]], dtype=torch.float64)
    lo, hi = encode_params(corners, input_encoding).numpy()     # every encoding is monotone in each parameter
    art = Artifact(config=cfg, members=states, input_mean=0.5 * (lo + hi),
                   input_std=(hi - lo) / np.sqrt(12.0),
                   output_mean=np.array([_RANDOM_OUTPUT_SCALERS[s][0] for s in cfg.statistics]),
                   output_scale=np.array([_RANDOM_OUTPUT_SCALERS[s][1] for s in cfg.statistics]),
                   domain=domain.to_dict(), dataset_hash=None,
                   training={"untrained": True, "seed": seed}, versions=library_versions(),
                   input_encoding=input_encoding)
    return save_artifact(path, art)
