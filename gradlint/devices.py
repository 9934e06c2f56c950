"""`--device`: checked before any work, and the way out when a model asks for a device this machine lacks."""

from __future__ import annotations

import os
import re

from gradlint.types import ErrorKind, GradlintError

_ACCELERATORS = ("cuda", "mps", "xpu", "hpu", "npu")


def _available(kind: str) -> bool:
    import torch

    if kind == "cpu":
        return True
    if kind == "cuda":
        # NVML's count: asking the CUDA runtime here would initialise CUDA in the process that forks the workers
        saved = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
        try:
            return bool(torch.cuda.is_available())
        finally:
            if saved is None:
                os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
            else:
                os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved
    if kind == "mps":
        return bool(torch.backends.mps.is_available())
    backend = getattr(torch, kind, None)
    return bool(getattr(backend, "is_available", lambda: False)())


def check_device(text: str) -> str:
    """The `--device` value, if torch can parse it and this machine has that device; else a usage error."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise GradlintError(ErrorKind.INPUT, f"--device {text!r} is not a device torch knows; give one such as cpu, "
                                             "cuda, cuda:1 or mps.") from None
    if device.type == "meta":
        raise GradlintError(ErrorKind.INPUT, "--device meta cannot run the probe (meta tensors hold no values); "
                                             "use --no-probe for a static-only check instead.")
    if not _available(device.type):
        raise GradlintError(ErrorKind.INPUT, f"--device {text}: this machine has no {device.type} device for torch "
                                             f"{torch.__version__}; leave --device out to probe where the model is, or "
                                             "run gradlint where that device exists.")
    return text


def absent_device_hint(text: str) -> str:
    """A sentence to add to an error whose text names an accelerator this machine does not have, or ""."""
    for kind in _ACCELERATORS:
        if re.search(rf"\b{kind}\b", text, re.IGNORECASE) and not _available(kind):
            return (f" The model asks for a {kind} device, which this machine does not have: build it on the CPU "
                    f"when none is available (e.g. `device = \"{kind}\" if torch.{kind}.is_available() else \"cpu\"` "
                    "in its constructor and forward), or on the meta device with --no-probe, or run gradlint where "
                    f"the {kind} device exists.")
    return ""
