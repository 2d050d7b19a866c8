"""The standard InceptionV3 feature network (the TF FID graph) and where its weights come from:
a local file, the torch hub cache, or a download when this machine is online."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

from ganexp.errors import GanexpError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class InceptionFeatures(nn.Module):
    """torch-fidelity's InceptionV3 (the TF FID network) through torchmetrics: 2048-d pool
    features and the 1008 unbiased logits, from uint8 RGB resized to 299x299 with TF1's
    bilinear resize (``antialias=False``: the protocol behind published FID and IS)."""

    def __init__(self, weights: str):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=weights, antialias=False)
        h = hashlib.sha256(Path(weights).read_bytes()[: 1 << 20]).hexdigest()[:12]
        self.key, self.num_features, self.num_classes = f"inception-v3-tf1resize-{h}", 2048, 1008

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u8 = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        feats, logits = self.net._torch_fidelity_forward(u8)
        return feats, logits


def _online(host: str = "github.com", timeout: float = 3.0) -> bool:
    """A connection test that cannot hang: DNS has no timeout, so it runs in a thread."""
    ok = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return bool(ok)


def inception_on_disk(path: str | None) -> bool:
    """Whether the InceptionV3 weights are here without a download: at ``path`` or in the torch hub cache."""
    if path:
        return Path(path).expanduser().is_file()
    return (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE).is_file()


def inception_weights(path: str | None, metric: str = "FID") -> str:
    """The local InceptionV3 weights file, downloading it into the torch hub cache when online."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GanexpError(f"inception_weights={path}: no such file ({INCEPTION_FILE} expected)")
        return str(p)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    cached = hub / INCEPTION_FILE
    if cached.is_file():
        return str(cached)
    offline = (f"{metric} needs InceptionV3 weights ({INCEPTION_FILE}): put the file in {hub}/ or pass "
               f"eval.inception_weights=PATH; offline, use metrics=[{metric.lower()}_clf] instead")
    if os.environ.get("GANEXP_OFFLINE") == "1" or not _online():
        raise GanexpError(offline)
    try:
        hub.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except Exception:
        raise GanexpError(offline) from None
    return str(cached)
