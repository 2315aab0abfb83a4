"""Model files (local paths or hf://OWNER/REPO/FILE) and ONNX Runtime sessions on a chosen device."""
from __future__ import annotations

from pathlib import Path

from animate_anyone.errors import ConfigError
from animate_anyone.pose.backends.base import ModelError

# --- model files ---------------------------------------------------------------------------------

def resolve_model(spec: str, field_name: str, base_dir: Path | None = None) -> Path:
    """A local path (relative to ``base_dir``), or ``hf://OWNER/REPO/FILE`` from the Hugging Face hub
    (its local cache first; a download only when online)."""
    if spec.startswith("hf://"):
        parts = spec[len("hf://"):].split("/")
        if len(parts) < 3:
            raise ConfigError(f"{field_name}: {spec!r} is not hf://OWNER/REPO/FILE")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=repo, filename=filename))
        except Exception as exc:  # offline, missing file, no access: all say the same to the user
            raise ModelError(
                f"{field_name}: cannot get {filename!r} from the Hugging Face repo {repo!r} "
                f"(not in the local cache and the hub is unreachable or refused: {type(exc).__name__}: {exc}). "
                f"Download it where there is internet, or set {field_name} to a local path") from exc
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ModelError(f"{field_name}: model file {path} does not exist")
    return path


def _providers(device: str) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    device_id = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


def open_session(path: Path, device: str, field_name: str):
    """An ONNX Runtime session on ``device`` (auto | cpu | cuda | cuda:N); refuses a silent CPU fallback."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers(device))
    except Exception as exc:
        raise ModelError(f"{field_name}: ONNX Runtime cannot load {path}: {exc}") from exc
    if device.startswith("cuda") and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ModelError(
            f"{field_name}: the pipeline asks for device {device!r} but ONNX Runtime runs {path.name} on "
            f"{session.get_providers()[0]} (available: {', '.join(ort.get_available_providers())}). "
            f"Install onnxruntime-gpu with a matching CUDA, or set the device to 'auto' or 'cpu'")
    return session


def _io(session) -> str:
    ins = ", ".join(f"{i.name}{list(i.shape)}" for i in session.get_inputs())
    outs = ", ".join(f"{o.name}{list(o.shape)}" for o in session.get_outputs())
    return f"inputs [{ins}], outputs [{outs}]"


# --- DWPose on ONNX Runtime --------------------------------------------------------------------
