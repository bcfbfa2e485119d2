"""Read the tensors of a TorchScript archive (such as OpenAI's released CLIP `.pt` files) without loading or
running it: the archive's pickle is parsed with an allow-list, so it can only produce tensors and plain records."""
import pickle
import zipfile

import torch

from utils.errors import UserError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ModuleRecord:
    """Stands in for a scripted module class: keeps its attributes, has no behaviour."""

    def __setstate__(self, state):
        self.attributes = state if isinstance(state, dict) else {}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return storage.as_strided(size, stride, offset)


def _ordered_dict(*args):
    return dict(*args)


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _ModuleRecord
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return _ordered_dict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{self.source}: refused '{module}.{name}': not tensor data")

    def persistent_load(self, pid):
        _, dtype, key, _location, numel = pid
        data = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        return torch.frombuffer(data, dtype=dtype, count=numel) if numel else torch.empty(0, dtype=dtype)


def _flatten(record: _ModuleRecord, prefix: str, out: dict):
    for name, value in record.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ModuleRecord):
            _flatten(value, f"{prefix}{name}.", out)


def is_torchscript_archive(path) -> bool:
    """Whether `path` is a TorchScript archive: torch.jit.save's zip holds a constants.pkl, torch.save's does not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_torchscript_tensors(path) -> dict:
    """All tensor attributes of the archived module tree, keyed like a state dict (`visual.conv1.weight`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if not pickles:
                raise UserError(f"{path}: a zip archive without data.pkl is not a TorchScript or PyTorch file")
            prefix = pickles[0][: -len("data.pkl")]
            with archive.open(pickles[0]) as file:
                root = _AllowListUnpickler(file, archive, prefix, str(path)).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise UserError(f"{path}: not a readable TorchScript archive ({error})") from None
    if not isinstance(root, _ModuleRecord):
        raise UserError(f"{path}: the TorchScript archive holds no module")
    tensors = {}
    _flatten(root, "", tensors)
    return tensors
