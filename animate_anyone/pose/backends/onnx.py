"""Model files (local paths or hf://OWNER/REPO/FILE) and ONNX Runtime sessions on a chosen device."""
from __future__ import annotations

from pathlib import Path

from animate_anyone.pose.backends.base import ModelError
from animate_anyone.weights import from_hub, local_path

# --- model files ---------------------------------------------------------------------------------

def model_file(spec: str, field_name: str, base_dir: Path | None = None) -> Path:
    """A local path (relative to ``base_dir``), or ``hf://OWNER/REPO/FILE`` from the Hugging Face hub
    (its local cache first; a download only when online)."""
    if spec.startswith("hf://"):
        return from_hub(spec, field_name, "file", ModelError)
    path = local_path(spec, base_dir)
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
