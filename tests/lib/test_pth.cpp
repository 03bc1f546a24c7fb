// The torch.save reader on hand-made archives (pickle bytes written opcode by opcode, zipped with
// LibTorch's PyTorchStreamWriter), and the strict import into a module. The Python test
// tests/python/test_pth_import.py checks files written by PyTorch itself.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "setdet/engine/checkpoint.h"
#include "setdet/io/pth.h"
#include "setdet/io/state_dict.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

using test_util::error_of;

struct PthTempDir {
  fs::path path;
  PthTempDir() {
    path = fs::temp_directory_path() / ("setdet_pth_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~PthTempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Pickle protocol 2 bytes, written opcode by opcode as torch.save's pickler emits them.
class PickleBytes {
 public:
  PickleBytes& proto() { return op(0x80).byte(2); }
  PickleBytes& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleBytes& str(const std::string& s) { return op('X').le(s.size(), 4).raw(s); }
  PickleBytes& int1(uint8_t v) { return op('K').byte(v); }
  PickleBytes& int4(int32_t v) { return op('J').le(static_cast<uint32_t>(v), 4); }
  PickleBytes& int8(int64_t v) { return op(0x8a).byte(8).le(static_cast<uint64_t>(v), 8); }
  PickleBytes& put(uint8_t i) { return op('q').byte(i); }
  PickleBytes& get(uint8_t i) { return op('h').byte(i); }
  PickleBytes& binfloat(double v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(bits));
    op('G');
    for (int k = 7; k >= 0; --k) byte(static_cast<uint8_t>(bits >> (8 * k)));
    return *this;
  }
  // One-element tuple ('storage', torch.<type>, key, 'cpu', numel), then BINPERSID.
  PickleBytes& storage(const std::string& type, const std::string& key, uint8_t numel) {
    return op('(')
        .str("storage")
        .global("torch", type)
        .str(key)
        .str("cpu")
        .int1(numel)
        .op('t')
        .op('Q');
  }
  // torch._utils._rebuild_tensor_v2(<storage>, offset, size, stride, False, OrderedDict()), the
  // ints as BININT1 (as torch.save writes small ones) or, in tensor64, as 8-byte LONG1.
  PickleBytes& tensor(const std::string& type, const std::string& key, uint8_t numel,
                      uint8_t offset, const std::vector<uint8_t>& size,
                      const std::vector<uint8_t>& stride) {
    return rebuild(type, key, numel, offset, size, stride, &PickleBytes::int1);
  }
  PickleBytes& tensor64(const std::string& type, const std::string& key, uint8_t numel,
                        int64_t offset, const std::vector<int64_t>& size,
                        const std::vector<int64_t>& stride) {
    return rebuild(type, key, numel, offset, size, stride, &PickleBytes::int8);
  }
  template <typename Int>
  PickleBytes& rebuild(const std::string& type, const std::string& key, uint8_t numel,
                       Int offset, const std::vector<Int>& size, const std::vector<Int>& stride,
                       PickleBytes& (PickleBytes::*write_int)(Int)) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').storage(type, key, numel);
    (this->*write_int)(offset);
    op('(');
    for (const Int s : size) (this->*write_int)(s);
    op('t').op('(');
    for (const Int s : stride) (this->*write_int)(s);
    op('t').op(0x89).global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  PickleBytes& op(uint8_t code) { return byte(code); }
  PickleBytes& byte(uint8_t b) {
    bytes_.push_back(static_cast<char>(b));
    return *this;
  }
  PickleBytes& raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  PickleBytes& le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) byte(static_cast<uint8_t>(v >> (8 * k)));
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void write_zip(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
  writer.writeEndOfFile();
}

std::string storage_0_to_5() { return raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}); }

// OrderedDict([('a', view [2, 2] at offset 1 of storage 0), ('b', its transpose [3, 2])])
// with a _metadata attribute set by BUILD, as model.state_dict() pickles.
std::string ordered_dict_with_views() {
  PickleBytes p;
  p.proto().global("collections", "OrderedDict").put(0).op(')').op('R').put(1).op('(');
  p.str("a").tensor("FloatStorage", "0", 6, 1, {2, 2}, {2, 1});
  p.str("b").tensor("FloatStorage", "0", 6, 0, {3, 2}, {1, 3});
  p.op('u');
  p.op('}').str("_metadata").get(0).op(')').op('R').op('(').str("").op('}').str("version").int1(1);
  p.op('s').op('u').op('s').op('b').op('.');
  return p.bytes();
}

TEST(Pth, OrderedDictWithMetadataAndSharedStorageViews) {
  PthTempDir dir;
  const std::string file = dir.file("views.pth");
  write_zip(file, {{"data.pkl", ordered_dict_with_views()}, {"data/0", storage_0_to_5()}});
  const NamedTensors t = load_pth_state_dict(file);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first, "a");
  EXPECT_EQ(t[1].first, "b");
  EXPECT_TRUE(at::equal(t[0].second, torch::tensor({1.f, 2.f, 3.f, 4.f}).view({2, 2})));
  EXPECT_TRUE(at::equal(t[1].second, torch::tensor({0.f, 3.f, 1.f, 4.f, 2.f, 5.f}).view({3, 2})));
  // Contiguous and independent of each other.
  EXPECT_TRUE(t[1].second.is_contiguous());
  t[0].second.zero_();
  EXPECT_EQ(t[1].second[0][1].item<float>(), 3.f);
}

TEST(Pth, NestedStateDictEntryIsChosenAndOtherEntriesIgnored) {
  PthTempDir dir;
  const std::string file = dir.file("nested.pth");
  PickleBytes p;
  p.proto().op('}').op('(');
  p.str("meta").op('}').op('(').str("epoch").int4(-7).str("lr").binfloat(0.25).str("cls");
  p.global("mmdet.models", "Unknown").op(')').op('R').op('u');
  p.str("state_dict").op('}').str("w").tensor("LongStorage", "3", 3, 0, {3}, {1}).op('s');
  p.op('u').op('.');
  write_zip(file, {{"data.pkl", p.bytes()}, {"data/3", raw_bytes(std::vector<int64_t>{7, -8, 9})}});
  const NamedTensors t = load_pth_state_dict(file);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].first, "w");
  EXPECT_EQ(t[0].second.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(t[0].second, torch::tensor({7, -8, 9}, at::kLong)));
}

TEST(Pth, ZeroDimAndEmptyTensors) {
  PthTempDir dir;
  const std::string file = dir.file("shapes.pth");
  PickleBytes p;
  p.proto().op('}').op('(');
  p.str("scalar").tensor("DoubleStorage", "0", 2, 1, {}, {});
  p.str("empty").tensor("DoubleStorage", "1", 0, 0, {0, 3}, {3, 1});
  p.op('u').op('.');
  write_zip(file, {{"data.pkl", p.bytes()},
                   {"data/0", raw_bytes(std::vector<double>{1.5, -2.5})},
                   {"data/1", ""}});
  const NamedTensors t = load_pth_state_dict(file);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].second.dim(), 0);
  EXPECT_EQ(t[0].second.item<double>(), -2.5);
  EXPECT_EQ(t[1].second.sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(Pth, ErrorsNameTheFileAndTheProblem) {
  PthTempDir dir;
  const std::string not_zip = dir.file("not_zip.pth");
  std::ofstream(not_zip) << "this is not a zip archive";
  std::string e = error_of([&] { load_pth_state_dict(not_zip); });
  EXPECT_NE(e.find(not_zip), std::string::npos) << e;
  EXPECT_NE(e.find("not a zip archive"), std::string::npos) << e;

  const std::string no_pickle = dir.file("no_pickle.pth");
  write_zip(no_pickle, {{"data/0", storage_0_to_5()}});
  e = error_of([&] { load_pth_state_dict(no_pickle); });
  EXPECT_NE(e.find(no_pickle + ": the zip archive has no data.pkl"), std::string::npos) << e;

  // INST ('i') is a protocol-0 opcode torch.save never writes.
  const std::string bad_op = dir.file("bad_op.pth");
  PickleBytes op;
  op.proto().op('}').op('(').op('i');
  write_zip(bad_op, {{"data.pkl", op.bytes()}});
  e = error_of([&] { load_pth_state_dict(bad_op); });
  EXPECT_NE(e.find(bad_op + ": data.pkl: unsupported pickle opcode 0x69 ('i') at byte 4"),
            std::string::npos)
      << e;

  const std::string bad_global = dir.file("bad_global.pth");
  PickleBytes g;
  g.proto().op('}').str("w").global("__main__", "Evil").op(')').op('R').op('s').op('.');
  write_zip(bad_global, {{"data.pkl", g.bytes()}});
  e = error_of([&] { load_pth_state_dict(bad_global); });
  EXPECT_NE(e.find(bad_global), std::string::npos) << e;
  EXPECT_NE(e.find("unsupported global __main__.Evil"), std::string::npos) << e;

  const std::string short_storage = dir.file("short_storage.pth");
  write_zip(short_storage,
            {{"data.pkl", ordered_dict_with_views()}, {"data/0", storage_0_to_5().substr(0, 20)}});
  e = error_of([&] { load_pth_state_dict(short_storage); });
  EXPECT_NE(e.find(short_storage + ": tensor 'a': truncated storage data/0: it holds 20 bytes"),
            std::string::npos)
      << e;

  const std::string missing_storage = dir.file("missing_storage.pth");
  write_zip(missing_storage, {{"data.pkl", ordered_dict_with_views()}});
  e = error_of([&] { load_pth_state_dict(missing_storage); });
  EXPECT_NE(e.find("tensor 'a': its storage record data/0 is missing"), std::string::npos) << e;

  const std::string out_of_bounds = dir.file("out_of_bounds.pth");
  PickleBytes v;
  v.proto().op('}').str("a").tensor("FloatStorage", "0", 6, 3, {2, 2}, {2, 1}).op('s').op('.');
  write_zip(out_of_bounds, {{"data.pkl", v.bytes()}, {"data/0", storage_0_to_5()}});
  e = error_of([&] { load_pth_state_dict(out_of_bounds); });
  EXPECT_NE(e.find("tensor 'a': a view at offset 3 with size [2, 2] and stride [2, 1] reaches "
                   "element 6 of storage data/0, which holds 6"),
            std::string::npos)
      << e;

  const std::string truncated_pickle = dir.file("truncated_pickle.pth");
  const std::string full = ordered_dict_with_views();
  write_zip(truncated_pickle, {{"data.pkl", full.substr(0, 40)}, {"data/0", storage_0_to_5()}});
  e = error_of([&] { load_pth_state_dict(truncated_pickle); });
  EXPECT_NE(e.find(truncated_pickle + ": data.pkl: "), std::string::npos) << e;

  const std::string no_tensors = dir.file("no_tensors.pth");
  PickleBytes n;
  n.proto().op('}').str("epoch").int1(3).op('s').op('.');
  write_zip(no_tensors, {{"data.pkl", n.bytes()}});
  e = error_of([&] { load_pth_state_dict(no_tensors); });
  EXPECT_NE(e.find(no_tensors + ": no dict of tensors found"), std::string::npos) << e;
  EXPECT_NE(e.find("'epoch'"), std::string::npos) << e;

  const std::string list_top = dir.file("list_top.pth");
  PickleBytes l;
  l.proto().op(']').op('.');
  write_zip(list_top, {{"data.pkl", l.bytes()}});
  e = error_of([&] { load_pth_state_dict(list_top); });
  EXPECT_NE(e.find(list_top + ": the pickled object is a list of 0, expected a dict"),
            std::string::npos)
      << e;

  const std::string unknown_storage = dir.file("unknown_storage.pth");
  PickleBytes q;
  q.proto().op('}').str("q").tensor("QInt8Storage", "0", 6, 0, {6}, {1}).op('s').op('.');
  write_zip(unknown_storage, {{"data.pkl", q.bytes()}, {"data/0", storage_0_to_5()}});
  e = error_of([&] { load_pth_state_dict(unknown_storage); });
  EXPECT_NE(e.find("unsupported storage type torch.QInt8Storage"), std::string::npos) << e;
}

// {'w': <view>} over the six floats of storage 0.
std::string one_view(int64_t offset, const std::vector<int64_t>& size,
                     const std::vector<int64_t>& stride) {
  PickleBytes p;
  p.proto().op('}').str("w").tensor64("FloatStorage", "0", 6, offset, size, stride);
  return p.op('s').op('.').bytes();
}

TEST(Pth, ViewErrorsNameTheTensorAndTheValues) {
  PthTempDir dir;
  const std::string file = dir.file("view.pth");
  auto error_for = [&](int64_t offset, std::vector<int64_t> size, std::vector<int64_t> stride) {
    write_zip(file, {{"data.pkl", one_view(offset, size, stride)}, {"data/0", storage_0_to_5()}});
    return error_of([&] { load_pth_state_dict(file); });
  };
  // 2^40 elements of one stored float: refused before anything is allocated.
  std::string e = error_for(0, {int64_t{1} << 40}, {0});
  EXPECT_NE(e.find(file + ": tensor 'w': size [1099511627776] holds 1099511627776 elements, more "
                          "than the 6 of its storage data/0"),
            std::string::npos)
      << e;
  e = error_for(0, {3, -2}, {2, 1});
  EXPECT_NE(e.find("tensor 'w': size [3, -2] has the negative dimension -2 (dimension 1)"),
            std::string::npos)
      << e;
  e = error_for(0, {2}, {-1});
  EXPECT_NE(e.find("tensor 'w': stride [-1] has the negative value -1"), std::string::npos) << e;
  e = error_for(-4, {2}, {1});
  EXPECT_NE(e.find("tensor 'w': storage offset -4 is negative"), std::string::npos) << e;
  e = error_for(0, {int64_t{1} << 62, 4}, {4, 1});
  EXPECT_NE(e.find("tensor 'w': size [4611686018427387904, 4] holds more than 2^63 elements"),
            std::string::npos)
      << e;
  e = error_for(5, {2}, {std::numeric_limits<int64_t>::max()});
  EXPECT_NE(e.find("tensor 'w': a view at offset 5 with size [2] and stride "
                   "[9223372036854775807] overflows 64-bit element indices"),
            std::string::npos)
      << e;
  e = error_for(0, {2, 2}, {2});
  EXPECT_NE(e.find("tensor 'w': 2 sizes [2, 2] but 1 strides [2]"), std::string::npos) << e;
}

TEST(Pth, CorruptRecordIsRefusedNamingIt) {
  PthTempDir dir;
  const std::string file = dir.file("crc.pth");
  write_zip(file, {{"data.pkl", ordered_dict_with_views()}, {"data/0", storage_0_to_5()}});
  // Flip one byte of the stored floats 0..5 (the float 1.0 is 00 00 80 3f).
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string one = raw_bytes(std::vector<float>{1.f});
  const size_t at = bytes.find(one);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] = 0x40;  // 1.0 -> 2.0
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  const std::string e = error_of([&] { load_pth_state_dict(file); });
  EXPECT_NE(e.find(file + ": record 'crc/data/0' is corrupt: its bytes have CRC-32 0x"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find(", the archive declares 0x"), std::string::npos) << e;
}

// MARKs, the innermost object, then the wrapping opcodes: `depth` nested containers.
std::string nested(size_t depth, char container) {
  std::string p = "\x80\x02";
  if (container == 'l') {
    p += std::string(depth, '(') + ']' + std::string(depth, 'l');
  } else {
    p += ')' + std::string(depth, '\x85');  // TUPLE1 around the empty tuple
  }
  return p;
}

TEST(Pth, DeepNestingIsAnErrorNotACrash) {
  PthTempDir dir;
  const std::string file = dir.file("deep.pth");
  for (const char container : {'l', 't'}) {
    write_zip(file, {{"data.pkl", nested(1000000, container) + "."}});
    const std::string e = error_of([&] { load_pth_state_dict(file); });
    EXPECT_NE(e.find(file + ": data.pkl: objects nested more than 1000 levels deep at byte"),
              std::string::npos)
        << e;
  }
  // A dict key that is a 200,000-deep tuple.
  write_zip(file, {{"data.pkl", "\x80\x02}" + nested(200000, 't').substr(2) + "K\x01s."}});
  const std::string e = error_of([&] { load_pth_state_dict(file); });
  EXPECT_NE(e.find("nested more than 1000 levels deep"), std::string::npos) << e;
  // Just under the limit: read (and hashed as a key) without trouble.
  write_zip(file, {{"data.pkl", "\x80\x02}" + nested(999, 't').substr(2) + "K\x01s."}});
  EXPECT_NE(error_of([&] { load_pth_state_dict(file); }).find("no dict of tensors found"),
            std::string::npos);
}

TEST(Pth, SharedAndCyclicObjectsStayLinear) {
  PthTempDir dir;
  const std::string file = dir.file("dag.pth");
  // t_k = (t_{k-1}, t_{k-1}) for k = 1..80: 2^80 leaves if expanded, 80 tuples as stored. Used as
  // a dict key, then a list that holds itself.
  std::string b = "\x80\x02}";
  b += ")q";
  b += '\0';
  b += '0';
  for (int k = 1; k <= 80; ++k) {
    b += 'h';
    b += static_cast<char>(k - 1);
    b += 'h';
    b += static_cast<char>(k - 1);
    b += '\x86';  // TUPLE2
    b += 'q';
    b += static_cast<char>(k);
    if (k < 80) b += '0';  // POP: only t_80 stays on the stack
  }
  b += "K\x01s";  // {t_80: 1}
  b += "]q\x51h\x51"
       "a";   // a list appended to itself
  b += "0.";  // drop it, return the dict
  write_zip(file, {{"data.pkl", b}});
  const std::string e = error_of([&] { load_pth_state_dict(file); });
  EXPECT_NE(e.find(file + ": no dict of tensors found: the top-level dict holds no tensors (a "
                          "tuple of 2: an int 1)"),
            std::string::npos)
      << e;
}

TEST(Pth, CodeExecutionPayloadsAreNeverRun) {
  PthTempDir dir;
  const std::string marker = dir.file("pwned");
  const std::string command = "touch " + marker;
  struct Payload {
    std::string module, name;
  };
  for (const Payload& g : {Payload{"posix", "system"}, Payload{"os", "system"},
                           Payload{"builtins", "eval"}, Payload{"builtins", "exec"},
                           Payload{"subprocess", "Popen"}, Payload{"builtins", "getattr"}}) {
    const std::string file = dir.file(g.module + "_" + g.name + ".pth");
    PickleBytes p;
    p.proto().op('}').str("state_dict").op('}').str("w");
    if (g.name == "getattr") {
      // getattr(getattr(__import__('os'), 'system'))('touch ...')
      p.global("builtins", "getattr").op('(').global("builtins", "__import__").op('(').str("os");
      p.op('t').op('R').str("system").op('t').op('R').op('(').str(command).op('t').op('R');
    } else {
      p.global(g.module, g.name).op('(').str(command).op('t').op('R');
    }
    p.op('s').op('s').op('.');
    write_zip(file, {{"data.pkl", p.bytes()}});
    const std::string e = error_of([&] { load_pth_state_dict(file); });
    EXPECT_NE(e.find(file +
                     ": no dict of tensors found: the top-level dict's 'state_dict' entry "
                     "holds no tensors ('w': a " +
                     g.module + "." + g.name + " object"),
              std::string::npos)
        << e;
    EXPECT_FALSE(fs::exists(marker)) << g.module << "." << g.name << " was run";
  }
}

TEST(Pth, TensorCrc32MatchesZlib) {
  // zlib.crc32(b"123456789") == 0xCBF43926 (the CRC-32 check value).
  const at::Tensor digits = torch::tensor({'1', '2', '3', '4', '5', '6', '7', '8', '9'}, at::kByte);
  EXPECT_EQ(tensor_crc32(digits), 0xCBF43926u);
  EXPECT_EQ(tensor_crc32(at::empty({0}, at::kFloat)), 0u);
}

struct TinyNet : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  TinyNet() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
};

NamedTensors tiny_net_tensors(const std::string& prefix) {
  return {{prefix + "fc.weight", torch::arange(6, at::kDouble).view({2, 3})},
          {prefix + "fc.bias", torch::tensor({1.0, 2.0})},
          {prefix + "bn.weight", torch::tensor({3.f, 4.f})},
          {prefix + "bn.bias", torch::tensor({5.f, 6.f})},
          {prefix + "bn.running_mean", torch::tensor({7.f, 8.f})},
          {prefix + "bn.running_var", torch::tensor({9.f, 10.f})},
          {prefix + "bn.num_batches_tracked", torch::tensor(11, at::kLong)}};
}

TEST(StateDictImport, CopiesConvertsDtypeAndAppliesRenameRules) {
  TinyNet net;
  const Config cfg = Config::parse(
      "checkpoint_import:\n"
      "  rename: [{from: '^module\\.', to: ''}, {from: '^(bn)\\.', to: '$1.'}]\n"
      "  ignore_unexpected: ['extra\\..*']\n");
  const auto rules = CheckpointImportRules::from_config(cfg);
  NamedTensors file = tiny_net_tensors("module.");
  file.emplace_back("module.extra.step", torch::tensor(1));
  const ImportReport r = import_state_dict("net.pth", file, net, rules);
  EXPECT_EQ(r.loaded, 7u);
  EXPECT_EQ(r.ignored_unexpected, std::vector<std::string>{"extra.step"});
  EXPECT_EQ(net.fc->weight.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(net.fc->weight, torch::arange(6, at::kFloat).view({2, 3})));
  EXPECT_TRUE(at::equal(net.bn->running_var, torch::tensor({9.f, 10.f})));
  EXPECT_EQ(net.bn->num_batches_tracked.item<int64_t>(), 11);
}

TEST(StateDictImport, StrictErrorsListMissingUnexpectedAndShapes) {
  TinyNet net;
  NamedTensors file = tiny_net_tensors("");
  file.erase(file.begin() + 4);                        // bn.running_mean missing
  file[1].second = torch::zeros({3});                  // fc.bias of another shape
  file.emplace_back("head.extra", torch::zeros({1}));  // unexpected
  const at::Tensor before = net.fc->weight.clone();
  const std::string e = error_of([&] { import_state_dict("net.pth", file, net, {}); });
  EXPECT_NE(e.find("net.pth: the weights do not fit the model"), std::string::npos) << e;
  EXPECT_NE(e.find("1 missing (in the model, not in the file): bn.running_mean"), std::string::npos)
      << e;
  EXPECT_NE(e.find("1 unexpected (in the file, not in the model): head.extra"), std::string::npos)
      << e;
  EXPECT_NE(e.find("fc.bias file [3] vs model [2]"), std::string::npos) << e;
  EXPECT_TRUE(at::equal(net.fc->weight, before));  // nothing copied

  const Config cfg = Config::parse("checkpoint_import: {ignore_missing: ['bn\\.running_.*']}");
  NamedTensors partial = tiny_net_tensors("");
  partial.erase(partial.begin() + 4, partial.begin() + 6);
  const ImportReport r =
      import_state_dict("net.pth", partial, net, CheckpointImportRules::from_config(cfg));
  EXPECT_EQ(r.loaded, 5u);
  EXPECT_EQ(r.ignored_missing, (std::vector<std::string>{"bn.running_mean", "bn.running_var"}));

  NamedTensors clash = tiny_net_tensors("");
  clash.emplace_back("copy.fc.bias", torch::zeros({2}));
  const Config strip = Config::parse("checkpoint_import: {rename: [{from: '^copy\\.', to: ''}]}");
  const std::string c = error_of(
      [&] { import_state_dict("net.pth", clash, net, CheckpointImportRules::from_config(strip)); });
  EXPECT_NE(c.find("'fc.bias' and 'copy.fc.bias' both become 'fc.bias'"), std::string::npos) << c;
}

TEST(StateDictImport, ConfigErrorsNameTheKeyPath) {
  std::string e = error_of([] {
    CheckpointImportRules::from_config(Config::parse("checkpoint_import: {renames: []}", "c.yaml"));
  });
  EXPECT_NE(e.find("c.yaml: unknown key 'checkpoint_import.renames'"), std::string::npos) << e;
  e = error_of([] {
    CheckpointImportRules::from_config(
        Config::parse("checkpoint_import: {rename: [{from: '(', to: ''}]}", "c.yaml"));
  });
  EXPECT_NE(e.find("checkpoint_import.rename[0].from: invalid regular expression '('"),
            std::string::npos)
      << e;
  e = error_of([] {
    CheckpointImportRules::from_config(
        Config::parse("checkpoint_import: {rename: [{from: 'a', too: ''}]}", "c.yaml"));
  });
  EXPECT_NE(e.find("unknown key 'checkpoint_import.rename[0].too'"), std::string::npos) << e;
  e = error_of([] {
    CheckpointImportRules::from_config(
        Config::parse("checkpoint_import: {ignore_missing: 'head'}", "c.yaml"));
  });
  EXPECT_NE(e.find("checkpoint_import.ignore_missing: expected a list"), std::string::npos) << e;
}

TEST(StateDictImport, LoadModelWeightsTellsCheckpointsFromPth) {
  PthTempDir dir;
  TinyNet source;
  {
    torch::NoGradGuard no_grad;
    source.fc->weight.fill_(0.5);
  }
  const std::string ckpt = dir.file("net.pt");
  save_checkpoint(ckpt, source, nullptr, TrainState{}, CheckpointMeta{});
  EXPECT_TRUE(is_torchscript_archive(ckpt));

  TinyNet target;
  const LoadedWeights w = load_model_weights(ckpt, target, Config::parse("{}"));
  EXPECT_TRUE(w.checkpoint.has_value());
  EXPECT_FALSE(w.imported.has_value());
  EXPECT_TRUE(at::equal(target.fc->weight, source.fc->weight));

  const std::string pth = dir.file("views.pth");
  write_zip(pth, {{"data.pkl", ordered_dict_with_views()}, {"data/0", storage_0_to_5()}});
  EXPECT_FALSE(is_torchscript_archive(pth));
  const std::string e = error_of([&] { load_model_weights(pth, target, Config::parse("{}")); });
  EXPECT_NE(e.find(pth + ": the weights do not fit the model: 7 missing"), std::string::npos) << e;
  EXPECT_NE(e.find("2 unexpected (in the file, not in the model): a, b"), std::string::npos) << e;
}

}  // namespace
}  // namespace setdet
