// Reading `.pth` files written by PyTorch's `torch.save` (zip format, PyTorch >= 1.6) without
// Python: the zip container is read with setdet's ZipArchive (declared sizes checked against the
// file, CRC-32 of every record verified) and `<archive>/data.pkl` with setdet's own restricted
// unpickler. Nothing in the file is executed: only the globals a state_dict needs are understood
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2, _rebuild_parameter, the
// torch.*Storage types); any other object is kept as an opaque value and is an error only if it
// sits where a tensor is expected. Hostile files are bounded: nesting deeper than 1000 levels, more
// than 4M objects, views larger than their storage are errors; nothing recurses without bound.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace setdet {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The tensors of the state_dict in `path`, in file order, each a contiguous CPU tensor with its
// own storage (views that shared a storage in Python are copied apart). The pickled top-level
// object must be a dict or collections.OrderedDict; its nested 'state_dict' entry (MMDetection),
// else its nested 'model' entry (detectron2, torchvision's reference scripts), is used when it is
// a dict, else the top-level dict itself. Every value of the chosen dict must be a tensor; the
// other top-level entries ('meta', 'optimizer', ...) are ignored. Errors (setdet::Error) name
// `path` and what was wrong: not a zip archive, no data.pkl, an unsupported pickle opcode (with
// its byte offset), an unsupported global where a tensor is expected, a truncated storage, no
// dict of tensors.
NamedTensors load_pth_state_dict(const std::string& path);

// True when `path` is a zip archive written by TorchScript serialization (it holds a
// `constants.pkl` record, which torch.save never writes): setdet checkpoints
// (torch::serialize::OutputArchive) are such archives. False for anything else, including files
// that are not zip archives.
bool is_torchscript_archive(const std::string& path);

// Checks a TorchScript archive (a setdet checkpoint) before LibTorch reads it, since LibTorch
// reads neither CRC-32s nor its pickles with bounded recursion: the zip structure and every
// record's CRC-32, and data.pkl / constants.pkl through setdet's unpickler (nesting depth, object
// count, opcodes). Throws setdet::Error naming `path`.
void check_torchscript_archive(const std::string& path);

// CRC-32 (IEEE 802.3, as zlib.crc32) of the tensor's elements as contiguous little-endian bytes:
// a dtype-exact fingerprint to compare tensors across programs.
uint32_t tensor_crc32(const at::Tensor& t);

}  // namespace setdet
